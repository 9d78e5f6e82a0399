//! [`Lab`]: a lab made by `up`, and the actions on it (partition, heal, crash, boot, reboot,
//! wipe, slow). Machine indices are 1-based lines of the machines file; an action on a line
//! acts on the lab machine that account is on (with `--users-per-machine K`, lines `K·(h−1)+1`
//! to `K·h` are machine h's accounts).

use std::{
    net::Ipv4Addr,
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use serde::Serialize;

use crate::{
    cgroup,
    down::{self, DownReport},
    error::{LabError, Result},
    layout::LabState,
    net, procs, sshd,
    up::{self, UpOptions},
    users,
};

/// A lab on this host, as recorded in its directory.
#[derive(Debug)]
pub struct Lab {
    state: LabState,
}

/// What `up` prints: the names of the contract (`machines`, `machines_file`, `known_hosts`,
/// `key`) and what else a user of the lab needs.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// The machines file's lines, `user@address`.
    pub machines: Vec<String>,
    pub machines_file: PathBuf,
    /// One line per lab machine (address, port 22, its host key): for `smon-console init
    /// --known-hosts`.
    pub known_hosts: PathBuf,
    /// The private key every account authorises (the agent holds it).
    pub key: PathBuf,
    pub id: String,
    pub dir: PathBuf,
    pub subnet: String,
    /// The host's end of the lab's bridge: the address machines reach the host on (the agent).
    pub host_address: Ipv4Addr,
    pub hosts: usize,
    pub users_per_machine: usize,
}

/// Where machine `host`'s processes are.
pub(crate) fn places(lab: &LabState, host: usize) -> procs::Places {
    procs::Places {
        cgroups: lab.host_cgroup(host).into_iter().collect(),
        netns: vec![lab.netns(host)],
        users: (1..=lab.users_per_machine)
            .map(|a| lab.user(host, a))
            .collect(),
    }
}

/// Where every machine's processes are.
pub(crate) fn all_places(lab: &LabState) -> procs::Places {
    let mut all = procs::Places::default();
    for host in lab.host_indices() {
        let one = places(lab, host);
        all.cgroups.extend(one.cgroups);
        all.netns.extend(one.netns);
        all.users.extend(one.users);
    }
    all
}

/// An exclusive lock on the lab's record while an action reads and rewrites it.
fn lock(dir: &Path) -> Result<std::fs::File> {
    let path = LabState::record_path(dir);
    let file = std::fs::File::open(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => LabError::NoLab {
            path: dir.to_owned(),
        },
        _ => LabError::io(&path)(e),
    })?;
    // SAFETY: flock on a descriptor we own; released when the file is closed.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(LabError::io(&path)(std::io::Error::last_os_error()));
    }
    Ok(file)
}

impl Lab {
    /// Make a lab of `options.machines` machines in `dir` (new or empty). On failure,
    /// whatever was made is removed again.
    pub fn up(dir: &Path, options: &UpOptions) -> Result<Lab> {
        up::preflight()?;
        up::check_options(options)?;
        let dir = up::prepare_dir(dir)?;
        match up::build(&dir, options) {
            Ok(state) => Ok(Lab { state }),
            Err(e) => {
                if let Err(cleanup) = down::down(&dir) {
                    eprintln!("smon-lab: removing the half-made lab failed too: {cleanup}");
                }
                Err(e)
            }
        }
    }

    /// The lab recorded in `dir`.
    pub fn open(dir: &Path) -> Result<Lab> {
        let state = LabState::load(dir)?;
        if !state.ready {
            return Err(LabError::State {
                path: LabState::record_path(dir),
                reason: "the lab was never finished (`up` died): run `down`".into(),
            });
        }
        Ok(Lab { state })
    }

    /// Remove the lab in `dir` and `dir` (nothing to do when there is none).
    pub fn down(dir: &Path) -> Result<DownReport> {
        up::preflight()?;
        down::down(dir)
    }

    pub fn state(&self) -> &LabState {
        &self.state
    }

    pub fn dir(&self) -> &Path {
        &self.state.dir
    }

    pub fn summary(&self) -> Summary {
        let s = &self.state;
        Summary {
            machines: s.entries(),
            machines_file: s.machines_file(),
            known_hosts: s.known_hosts(),
            key: s.key(),
            id: s.id.clone(),
            dir: s.dir.clone(),
            subnet: format!("{}/24", s.subnet.expect("an open lab has its subnet")),
            host_address: s.host_address(),
            hosts: s.hosts,
            users_per_machine: s.users_per_machine,
        }
    }

    /// The machines file's lines (`user@address`).
    pub fn entries(&self) -> Vec<String> {
        self.state.entries()
    }

    /// The lab machine of machines-file line `entry` (1-based).
    pub fn host_of(&self, entry: usize) -> Result<usize> {
        Ok(self.state.locate(entry)?.0)
    }

    /// The address of line `entry`'s machine.
    pub fn address(&self, entry: usize) -> Result<Ipv4Addr> {
        Ok(self.state.address(self.host_of(entry)?))
    }

    /// The home of line `entry`'s account.
    pub fn home(&self, entry: usize) -> Result<PathBuf> {
        let (host, account) = self.state.locate(entry)?;
        Ok(self.state.home(host, account))
    }

    /// The live processes of line `entry`'s machine (all its accounts, its sshd).
    pub fn processes(&self, entry: usize) -> Result<Vec<i32>> {
        Ok(places(&self.state, self.host_of(entry)?).pids())
    }

    /// CPU time used so far by every process of every machine (from the cgroups), if the host
    /// has cgroup v2.
    pub fn cpu_used(&self) -> Option<Duration> {
        self.state
            .host_indices()
            .map(|h| self.state.host_cgroup(h).and_then(|c| cgroup::cpu_used(&c)))
            .sum()
    }

    /// `ssh` to line `entry`'s account with the lab's key, pinned host keys, no prompts; add
    /// the remote command.
    pub fn ssh(&self, entry: usize) -> Result<Command> {
        self.state.locate(entry)?;
        let mut cmd = Command::new("ssh");
        cmd.arg("-i")
            .arg(self.state.key())
            .arg("-o")
            .arg(format!(
                "UserKnownHostsFile={}",
                self.state.known_hosts().display()
            ))
            .args([
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "BatchMode=yes",
                "-o",
                "ConnectTimeout=5",
                "-o",
                "LogLevel=ERROR",
            ])
            .arg(&self.state.entries()[entry - 1]);
        Ok(cmd)
    }

    /// Split the machines into `groups` (machines-file lines) that cannot reach each other;
    /// machines in no group, and the host, still reach all. Replaces a partition in force.
    pub fn partition(&mut self, groups: &[Vec<usize>]) -> Result<()> {
        let hosts = self.group_hosts(groups)?;
        let _lock = lock(self.dir())?;
        net::partition(&self.state, &hosts)?;
        self.state.partition = hosts;
        self.state.save()
    }

    fn group_hosts(&self, groups: &[Vec<usize>]) -> Result<Vec<Vec<usize>>> {
        if groups.len() < 2 || groups.iter().any(Vec::is_empty) {
            return Err(LabError::bad(
                "partition",
                "give two or more non-empty groups, e.g. `1,2,3 4,5,6`",
            ));
        }
        let mut seen = std::collections::BTreeMap::new();
        let mut hosts = Vec::new();
        for (g, group) in groups.iter().enumerate() {
            let mut these = Vec::new();
            for &entry in group {
                let host = self.host_of(entry)?;
                if let Some(&other) = seen.get(&host)
                    && other != g
                {
                    return Err(LabError::bad(
                        "partition",
                        format!("machine {entry} (lab machine {host}) is in two groups"),
                    ));
                }
                seen.insert(host, g);
                if !these.contains(&host) {
                    these.push(host);
                }
            }
            hosts.push(these);
        }
        Ok(hosts)
    }

    /// Undo the partition: every machine reaches every other again.
    pub fn heal(&mut self) -> Result<()> {
        let _lock = lock(self.dir())?;
        net::heal(&self.state)?;
        self.state.partition.clear();
        self.state.save()
    }

    /// Kill every process of line `entry`'s machine at once, its sshd too: the machine is
    /// down until `boot`. How many processes died.
    pub fn crash(&self, entry: usize) -> Result<usize> {
        places(&self.state, self.host_of(entry)?).kill_all()
    }

    /// Start line `entry`'s machine's sshd if it is down (the machine boots); wait until it
    /// accepts connections.
    pub fn boot(&self, entry: usize) -> Result<()> {
        let host = self.host_of(entry)?;
        let addr = std::net::SocketAddr::from((self.state.address(host), sshd::PORT));
        let running =
            std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok();
        if !running {
            sshd::start(&self.state, host)?;
        }
        sshd::wait_listening(&[(host, self.state.address(host))])
    }

    /// `crash`, then `boot`.
    pub fn reboot(&self, entry: usize) -> Result<usize> {
        let killed = self.crash(entry)?;
        self.boot(entry)?;
        Ok(killed)
    }

    /// Reinstall line `entry`'s machine: crash it, empty every home on it, boot it (same
    /// address and host key).
    pub fn wipe(&self, entry: usize) -> Result<usize> {
        let host = self.host_of(entry)?;
        let killed = self.crash(entry)?;
        for account in 1..=self.state.users_per_machine {
            users::empty_home(&self.state.home(host, account))?;
        }
        self.boot(entry)?;
        Ok(killed)
    }

    /// Limit line `entry`'s machine's link to `rate` (tc words: `1mbit`) both ways; `off`
    /// lifts it.
    pub fn slow(&mut self, entry: usize, rate: &str) -> Result<()> {
        let host = self.host_of(entry)?;
        let bits = match rate {
            "off" => None,
            r => Some(net::parse_rate(r)?),
        };
        let _lock = lock(self.dir())?;
        net::slow(&self.state, host, bits)?;
        match bits {
            Some(_) => self.state.slow.insert(host, rate.to_owned()),
            None => self.state.slow.remove(&host),
        };
        self.state.save()
    }
}

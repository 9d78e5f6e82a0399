//! SSH machines end to end, against a real OpenSSH sshd on loopback: the test starts its own
//! sshd (own config, host key, port and users; 127.0.0.2–9 as eight machines, 127.0.0.1 for
//! a machine listed under two names), the console
//! starts the agent and deploys one machine, the peers deploy the rest over SSH with the agent
//! solving every login, and restart peers killed with kill -9. Needs root (useradd) and
//! /usr/sbin/sshd (`scripts/test.sh` installs openssh-server); skipped with a message otherwise.

mod harness;

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Mutex,
    time::Duration,
};

use harness::*;
use smon_proto::{ClusterFiles, MachineFiles};

const MACHINES: usize = 8;
/// One SSH cluster at a time: they share the 2 cores.
static SERIAL: Mutex<()> = Mutex::new(());

fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().expect("command runs");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn agent_bin() -> PathBuf {
    let p = console_bin().with_file_name("smon-agent");
    assert!(
        p.exists(),
        "{} is missing: build the workspace",
        p.display()
    );
    p
}

struct SshLab {
    tmp: tempfile::TempDir,
    users: Vec<String>,
    sshd: Option<Child>,
    port: u16,
    key: PathBuf,
    /// Extra processes to end (ssh-agent).
    extra: Vec<i32>,
}

impl SshLab {
    fn available() -> bool {
        let root = unsafe { libc_geteuid() } == 0;
        if !root || !Path::new("/usr/sbin/sshd").exists() {
            eprintln!(
                "skipped: needs root and /usr/sbin/sshd (apt-get install openssh-server, or run \
                 scripts/test.sh as root)"
            );
            return false;
        }
        true
    }

    /// A lab with a `kind` login key, alone on the machine (SSH clusters share the two cores),
    /// or None when this machine cannot run one.
    fn serial(kind: &str) -> Option<(std::sync::MutexGuard<'static, ()>, Self)> {
        if !Self::available() {
            return None;
        }
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        Some((serial, Self::new(kind, |_| "/bin/sh")))
    }

    /// A lab whose user `i` has the login shell `shell(i)`.
    fn new(kind: &str, shell: impl Fn(usize) -> &'static str) -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("smon-ssh")
            .tempdir()
            .unwrap();
        let base = tmp.path().to_owned();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).unwrap();
        let tag: u32 = rand::random::<u32>() % 100_000;
        let users: Vec<String> = (1..=MACHINES).map(|i| format!("smt{tag}u{i}")).collect();
        let mut lab = SshLab {
            tmp,
            users: Vec::new(),
            sshd: None,
            port: 0,
            key: base.join("id"),
            extra: Vec::new(),
        };
        std::fs::create_dir(base.join("home")).unwrap();
        for (i, u) in users.iter().enumerate() {
            let home = base.join("home").join(u);
            sh(Command::new("useradd")
                .args(["-M", "-N", "-s", shell(i), "-d"])
                .arg(&home)
                .arg(u));
            lab.users.push(u.clone());
            std::fs::create_dir(&home).unwrap();
            sh(Command::new("chown").arg(u).arg(&home));
            sh(Command::new("usermod").args(["-p", "*", u]));
        }
        // The login key and the host key.
        let mut keygen = Command::new("ssh-keygen");
        keygen
            .args(["-q", "-t", kind, "-N", "", "-C", "smon-test", "-f"])
            .arg(&lab.key);
        if kind == "rsa" {
            keygen.args(["-b", "3072"]);
        }
        sh(&mut keygen);
        std::fs::copy(base.join("id.pub"), base.join("authorized_keys")).unwrap();
        let host_key = base.join("host_key");
        sh(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&host_key));
        // A port free on the eight addresses, and on 127.0.0.1 (`localhost`: a second name
        // of one address, for the machine identity test).
        let port = loop {
            let p = rand::random_range(20_000..60_000u16);
            if (1..2 + MACHINES)
                .all(|i| std::net::TcpListener::bind((format!("127.0.0.{i}"), p)).is_ok())
            {
                break p;
            }
        };
        lab.port = port;
        let listen: String = (1..2 + MACHINES)
            .map(|i| format!("ListenAddress 127.0.0.{i}:{port}\n"))
            .collect();
        let config = format!(
            "{listen}HostKey {hk}\nPidFile {base}/sshd.pid\nAuthorizedKeysFile {base}/authorized_keys\n\
             StrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
             PubkeyAuthentication yes\nAllowUsers {users}\nMaxStartups 200\nMaxSessions 100\nLogLevel VERBOSE\n",
            hk = host_key.display(),
            base = base.display(),
            users = users.join(" "),
        );
        std::fs::write(base.join("sshd_config"), config).unwrap();
        std::fs::create_dir_all("/run/sshd").unwrap();
        let log = std::fs::File::create(base.join("sshd.log")).unwrap();
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(base.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        lab.sshd = Some(child);
        wait_for(Duration::from_secs(10), "sshd to listen", || {
            std::net::TcpStream::connect(("127.0.0.2", port)).is_ok()
        });
        lab
    }

    fn base(&self) -> &Path {
        self.tmp.path()
    }

    fn machines(&self) -> Vec<String> {
        self.users
            .iter()
            .enumerate()
            .map(|(i, u)| format!("{u}@127.0.0.{}:{}", i + 2, self.port))
            .collect()
    }

    /// known_hosts lines for machines `range` (indices into `machines()`).
    fn known_hosts(&self, range: std::ops::Range<usize>) -> String {
        let host = std::fs::read_to_string(self.base().join("host_key.pub")).unwrap();
        let host: Vec<&str> = host.split_whitespace().take(2).collect();
        range
            .map(|i| {
                format!(
                    "[127.0.0.{}]:{} {} {}\n",
                    i + 2,
                    self.port,
                    host[0],
                    host[1]
                )
            })
            .collect()
    }

    fn root(&self, i: usize) -> PathBuf {
        self.base().join("home").join(&self.users[i]).join(".smon")
    }

    fn pid(&self, i: usize) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(MachineFiles::new(&self.root(i)).pid())
            .ok()?
            .trim()
            .parse()
            .ok()?;
        is_alive(pid).then_some(pid)
    }

    /// `smon-console init` of DIR `name` for `machines`, with `args` added.
    fn init(&self, name: &str, machines: &[String], args: &[&str]) -> PathBuf {
        let dir = self.base().join(name);
        let list = self.base().join(format!("{name}.machines"));
        std::fs::write(&list, machines.join("\n") + "\n").unwrap();
        let (dir_s, list_s, peer) = (
            dir.to_str().unwrap().to_owned(),
            list.to_str().unwrap().to_owned(),
            peer_bin().to_str().unwrap().to_owned(),
        );
        let mut all = vec![
            "init",
            &dir_s,
            "--machines",
            &list_s,
            "--interval",
            "1s",
            "--peer-binary",
            &peer,
        ];
        all.extend_from_slice(args);
        console(&all);
        dir
    }

    /// A cluster of the eight SSH machines, their host keys pinned, initialized with the
    /// agent's key `key_args` (`--key FILE` or `--ssh-agent SOCKET`), which is then the
    /// release key, and the agent started with that key.
    fn cluster(&self, key_args: &[&str]) -> PathBuf {
        let known = self.base().join("known_hosts");
        std::fs::write(&known, self.known_hosts(0..MACHINES)).unwrap();
        let mut args = vec!["--known-hosts", known.to_str().unwrap()];
        args.extend_from_slice(key_args);
        let dir = self.init("cluster", &self.machines(), &args);
        self.start_agent(&dir);
        dir
    }

    /// Check that `dir`'s release key is the login key, then start its agent with the key
    /// given to init.
    fn start_agent(&self, dir: &Path) {
        // The agent's key is the release key: the directory has no release key of its own.
        assert!(!ClusterFiles::new(dir).release_key().exists());
        let config = smon_proto::ClusterConfig::load(dir).unwrap();
        let login_key = std::fs::read_to_string(self.base().join("id.pub")).unwrap();
        let login_key: Vec<&str> = login_key.split_whitespace().take(2).collect();
        assert!(
            config.release_key.starts_with(&login_key.join(" ")),
            "{config:?}"
        );
        let _ = agent_bin();
        // No key option: the one given to init.
        console(&["-C", dir.to_str().unwrap(), "agent", "start"]);
    }

    fn deployed(&self) -> usize {
        (0..MACHINES).filter(|&i| self.pid(i).is_some()).count()
    }
}

fn console(args: &[&str]) -> String {
    sh(Command::new(console_bin()).args(args))
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

impl Drop for SshLab {
    fn drop(&mut self) {
        let base = self.tmp.path().to_owned();
        for &pid in &self.extra {
            kill(pid);
        }
        if let Some(mut sshd) = self.sshd.take() {
            let _ = sshd.kill();
            let _ = sshd.wait();
        }
        let gone = kill_until_gone(|| processes_mentioning(&base));
        for u in &self.users {
            // Session processes of the test users, then the users.
            let _ = Command::new("pkill").args(["-9", "-u", u]).status();
            let _ = Command::new("userdel").arg(u).status();
        }
        if !std::thread::panicking() {
            assert!(
                gone,
                "processes left behind: {}",
                describe(&processes_mentioning(&base))
            );
        }
    }
}

/// A cluster of the lab's eight machines with its key, deployed; then the peers of `killed`
/// killed with kill -9 and restarted over SSH. The cluster directory.
fn deploy_then_restart(lab: &SshLab, killed: [usize; 2]) -> PathBuf {
    let key = lab.key.to_str().unwrap().to_owned();
    let dir = lab.cluster(&["--key", &key]);
    console(&["-C", dir.to_str().unwrap(), "deploy"]);
    wait_for(Duration::from_secs(120), "8 SSH machines deployed", || {
        lab.deployed() == MACHINES
    });
    for i in killed {
        let pid = lab.pid(i).unwrap();
        kill(pid);
        wait_for(
            Duration::from_secs(60),
            &format!("machine {i} restarted"),
            || lab.pid(i).is_some_and(|p| p != pid),
        );
    }
    dir
}

fn deploy_eight_then_recover(kind: &str) {
    let Some((_serial, lab)) = SshLab::serial(kind) else {
        return;
    };
    let dir = deploy_then_restart(&lab, [3, 6]);
    let d = dir.to_str().unwrap();

    // No peer holds the private key: nothing under the machines' homes contains it.
    let private = std::fs::read_to_string(&lab.key).unwrap();
    let body: Vec<&str> = private
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() > 20)
        .collect();
    let mut files = 0;
    for entry in walk(&lab.base().join("home")) {
        let data = std::fs::read(&entry).unwrap_or_default();
        let text = String::from_utf8_lossy(&data);
        files += 1;
        assert!(
            !text.contains("PRIVATE KEY"),
            "{} holds a private key",
            entry.display()
        );
        for line in &body {
            assert!(
                !text.contains(line),
                "{} holds the private key",
                entry.display()
            );
        }
    }
    assert!(files > MACHINES * 3);
    // Nor the operator key, with which the agent signs releases.
    let operator = std::fs::read(ClusterFiles::new(&dir).operator_key()).unwrap();
    for entry in walk(&lab.base().join("home")) {
        let data = std::fs::read(&entry).unwrap_or_default();
        assert!(
            !data.windows(operator.len()).any(|w| w == operator),
            "{} holds the operator key",
            entry.display()
        );
    }

    // Every login was signed by the agent and audited.
    let audit = sh(Command::new(agent_bin()).args(["audit", "--limit", "1000", "-C", d]));
    assert!(audit.contains("signed"), "{audit}");
    console(&["-C", d, "agent", "stop"]);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if meta.is_dir() {
            out.extend(walk(&p));
        } else if meta.is_file() {
            out.push(p);
        }
    }
    out
}

/// Field faults, issue 15, kind 7: machines whose user's login shell is tcsh (every other one
/// of the eight) are deployed (probe, upload, install, start), restarted after kill -9, and
/// shut down like the others: every remote command is read by `/bin/sh`, whatever the login
/// shell.
#[test]
fn ssh_machines_whose_login_shell_is_tcsh_are_deployed_restarted_and_shut_down() {
    let tcsh = "/usr/bin/tcsh";
    if !SshLab::available() || !have("tcsh", "tcsh") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lab = SshLab::new("ed25519", |i| if i % 2 == 1 { tcsh } else { "/bin/sh" });
    // The fault as it was: a quoted multi-line command is refused by tcsh itself.
    let refused = Command::new(tcsh)
        .args(["-c", "sh -c 'echo one\necho two'"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&refused.stderr).contains("Unmatched"));
    // Machines 1 and 5 are tcsh ones.
    let dir = deploy_then_restart(&lab, [1, 5]);
    let d = dir.to_str().unwrap();
    let status = console(&["-C", d, "status"]);
    assert!(!status.contains("Unmatched"), "{status}");
    console(&["-C", d, "shutdown"]);
    wait_for(Duration::from_secs(60), "every peer gone", || {
        lab.deployed() == 0
    });
    console(&["-C", d, "agent", "stop"]);
}

#[test]
fn ssh_deploys_eight_machines_and_restarts_killed_peers_ed25519() {
    deploy_eight_then_recover("ed25519");
}

#[test]
fn ssh_deploys_eight_machines_and_restarts_killed_peers_rsa() {
    deploy_eight_then_recover("rsa");
}

#[test]
fn ssh_agent_killed_mid_deployment_then_back() {
    let Some((_serial, lab)) = SshLab::serial("ed25519") else {
        return;
    };
    let key = lab.key.to_str().unwrap().to_owned();
    let dir = lab.cluster(&["--key", &key]);
    let d = dir.to_str().unwrap();
    console(&["-C", d, "deploy"]);
    wait_for(Duration::from_secs(60), "a second machine deployed", || {
        lab.deployed() >= 2
    });
    let agent_pid: i32 = std::fs::read_to_string(ClusterFiles::new(&dir).agent_pid())
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    kill(agent_pid);
    wait_for(Duration::from_secs(10), "the agent to die", || {
        !is_alive(agent_pid)
    });
    let running: Vec<i32> = (0..MACHINES).filter_map(|i| lab.pid(i)).collect();
    // Several rounds without the agent: logins fail, no peer crashes.
    let before = lab.deployed();
    // A peer tries to log in while the agent is down, and fails cleanly.
    wait_for(
        Duration::from_secs(60),
        "a login refused for want of the agent",
        || {
            (0..MACHINES).any(|i| {
                std::fs::read_to_string(MachineFiles::new(&lab.root(i)).log())
                    .is_ok_and(|log| log.contains("the agent at"))
            })
        },
    );
    for pid in &running {
        assert!(is_alive(*pid), "peer {pid} died while the agent was down");
    }
    assert!(lab.deployed() >= before);
    console(&["-C", d, "agent", "start"]);
    wait_for(
        Duration::from_secs(120),
        "deployment to resume and finish",
        || lab.deployed() == MACHINES,
    );
    for pid in &running {
        assert!(is_alive(*pid), "peer {pid} died");
    }
    console(&["-C", d, "agent", "stop"]);
}

#[test]
fn ssh_deploys_through_openssh_ssh_agent() {
    let Some((_serial, mut lab)) = SshLab::serial("ed25519") else {
        return;
    };
    let socket = lab.base().join("ssh-agent.sock");
    let out = sh(Command::new("ssh-agent").arg("-a").arg(&socket).arg("-s"));
    let pid: i32 = out
        .lines()
        .find_map(|l| l.strip_prefix("SSH_AGENT_PID="))
        .and_then(|l| l.split(';').next())
        .unwrap()
        .parse()
        .unwrap();
    lab.extra.push(pid);
    sh(Command::new("ssh-add")
        .arg(&lab.key)
        .env("SSH_AUTH_SOCK", &socket));
    // The key file is gone: only OpenSSH's agent has it.
    std::fs::remove_file(&lab.key).unwrap();
    let dir = lab.cluster(&["--ssh-agent", socket.to_str().unwrap()]);
    let d = dir.to_str().unwrap();
    console(&["-C", d, "deploy"]);
    wait_for(Duration::from_secs(120), "8 SSH machines deployed", || {
        lab.deployed() == MACHINES
    });
    console(&["-C", d, "agent", "stop"]);
}

/// A failing console command's standard error.
fn console_fails(args: &[&str]) -> String {
    let out = Command::new(console_bin()).args(args).output().unwrap();
    assert!(!out.status.success(), "{args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn ssh_machines_added_later_get_their_host_keys_through_the_membership() {
    let Some((_serial, lab)) = SshLab::serial("ed25519") else {
        return;
    };
    let key = lab.key.to_str().unwrap().to_owned();
    let all = lab.machines();

    // A changed host key is refused before anything runs there.
    let wrong = lab.base().join("wrong_known_hosts");
    let other = lab.base().join("other_host_key");
    sh(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other));
    let other = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let other: Vec<&str> = other.split_whitespace().take(2).collect();
    std::fs::write(
        &wrong,
        format!("[127.0.0.2]:{} {} {}\n", lab.port, other[0], other[1]),
    )
    .unwrap();
    let dir = lab.init(
        "wrong",
        &all[..1],
        &["--known-hosts", wrong.to_str().unwrap(), "--key", &key],
    );
    lab.start_agent(&dir);
    let err = console_fails(&["-C", dir.to_str().unwrap(), "deploy"]);
    assert!(err.contains("HOST KEY CHANGED"), "{err}");
    assert_eq!(lab.deployed(), 0);
    console(&["-C", dir.to_str().unwrap(), "agent", "stop"]);

    // Unpinned machines are refused at init, with what to do.
    let err = console_fails(&[
        "init",
        lab.base().join("unpinned").to_str().unwrap(),
        "--machines",
        lab.base().join("wrong.machines").to_str().unwrap(),
        "--peer-binary",
        peer_bin().to_str().unwrap(),
    ]);
    assert!(
        err.contains("no pinned host key") && err.contains("--scan-host-keys"),
        "{err}"
    );
    assert!(!lab.base().join("unpinned").exists());

    // Four machines pinned and deployed.
    let known = lab.base().join("known_hosts");
    std::fs::write(&known, lab.known_hosts(0..4)).unwrap();
    let dir = lab.init(
        "cluster",
        &all[..4],
        &["--known-hosts", known.to_str().unwrap(), "--key", &key],
    );
    lab.start_agent(&dir);
    let d = dir.to_str().unwrap();
    console(&["-C", d, "deploy"]);
    wait_for(Duration::from_secs(120), "4 SSH machines deployed", || {
        lab.deployed() == 4
    });

    // A membership that any holder of K_E could send, with other pins for all eight and
    // without the release key's signature: refused as a whole (issue 14), so no peer takes
    // its list or its pins, and no login sees "HOST KEY CHANGED".
    let forged = smon_proto::Membership::new(50, all.iter().map(|m| m.parse().unwrap()).collect())
        .with_host_keys(|_| smon_proto::ReleasePublicKey::from_openssh(&other.join(" ")).ok());
    assert!(forged.has_pins());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let answer = runtime.block_on(async {
        let client = peer_client(&dir, &all[0].parse().unwrap()).await;
        client
            .control(
                smon_proto::tarpc::context::current(),
                smon_proto::ControlAction::SetMembership {
                    blob: forged.encode(),
                },
            )
            .await
            .unwrap()
    });
    assert!(
        matches!(&answer, Err(smon_proto::Refusal::Denied(why)) if why.contains("refused membership version 50")),
        "{answer:?}"
    );
    let logs = || -> String {
        (0..MACHINES)
            .filter_map(|i| std::fs::read_to_string(MachineFiles::new(&lab.root(i)).log()).ok())
            .collect()
    };
    wait_for(Duration::from_secs(10), "the refusal in the log", || {
        logs().contains("refused membership version 50 from the console")
    });
    assert!(!logs().contains("HOST KEY CHANGED"));
    assert_eq!(lab.deployed(), 4);

    // Four more: refused while their keys are not pinned (nothing changes), then scanned,
    // pinned into the membership, and deployed by the peers, which had never seen them.
    let eight = lab.base().join("eight");
    std::fs::write(&eight, all.join("\n") + "\n").unwrap();
    let err = console_fails(&["-C", d, "membership", "set", eight.to_str().unwrap()]);
    assert!(
        err.contains("4 SSH machine(s) have no pinned host key"),
        "{err}"
    );
    let out = console(&[
        "-C",
        d,
        "membership",
        "set",
        eight.to_str().unwrap(),
        "--scan-host-keys",
    ]);
    assert_eq!(out.matches("pinned 127.0.0.").count(), 4, "{out}");
    assert!(out.contains("SHA256:"), "{out}");
    wait_for(Duration::from_secs(120), "8 SSH machines deployed", || {
        lab.deployed() == MACHINES
    });
    // Nothing was trusted on first use: no peer has learned a key of its own.
    for i in 0..MACHINES {
        assert!(
            !MachineFiles::new(&lab.root(i)).known_hosts().exists(),
            "machine {i} learned a host key"
        );
    }
    console(&["-C", d, "agent", "stop"]);
}

#[test]
fn ssh_trust_on_first_use_is_an_explicit_cluster_option() {
    let Some((_serial, lab)) = SshLab::serial("ed25519") else {
        return;
    };
    let key = lab.key.to_str().unwrap().to_owned();
    let dir = lab.init(
        "cluster",
        &lab.machines(),
        &["--ssh-trust-on-first-use", "--key", &key],
    );
    lab.start_agent(&dir);
    let d = dir.to_str().unwrap();
    console(&["-C", d, "deploy"]);
    wait_for(Duration::from_secs(120), "8 SSH machines deployed", || {
        lab.deployed() == MACHINES
    });
    // The peers learned the keys they saw (each in its own known_hosts).
    let learned = (0..MACHINES)
        .filter(|&i| {
            std::fs::read_to_string(MachineFiles::new(&lab.root(i)).known_hosts())
                .is_ok_and(|t| t.contains("ssh-ed25519"))
        })
        .count();
    assert!(learned >= 1, "no peer recorded a host key");

    // An application, signed by the agent, spreads to the SSH machines and runs on each,
    // under the user's ~/.smon.
    let app = lab.base().join("sleeper");
    std::fs::create_dir(&app).unwrap();
    std::fs::write(
        app.join("app.toml"),
        "name = \"sleeper\"\nversion = \"1.0.0\"\nstart = \"exec sleep 100007\"\n",
    )
    .unwrap();
    console(&["-C", d, "app", "install", app.to_str().unwrap()]);
    let running = || {
        let out = Command::new(console_bin())
            .args(["-C", d, "app", "status", "sleeper", "--json"])
            .output()
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .ok()
            .and_then(|s| s["rows"].as_array().cloned())
            .is_some_and(|rows| {
                rows.len() == MACHINES && rows.iter().all(|r| r["state"] == "running")
            })
    };
    wait_for(Duration::from_secs(120), "sleeper running on 8", running);
    for i in 0..MACHINES {
        assert!(lab.root(i).join("apps/sleeper").is_dir(), "machine {i}");
    }
    console(&["-C", d, "agent", "stop"]);
}

/// Issue 15 kind 5: one account listed under two names that no canonical form can merge
/// (`127.0.0.1` and `localhost`) reaches one peer. The pong names the machine that answered:
/// the other entry is a conflict (logged, shown on its `status` row with who answered), never
/// counted as deployed; a third machine is deployed as usual.
#[test]
fn ssh_two_names_of_one_account_are_a_conflict_not_a_deployment() {
    let Some((_serial, lab)) = SshLab::serial("ed25519") else {
        return;
    };
    let key = lab.key.to_str().unwrap().to_owned();
    let (u0, u1, port) = (&lab.users[0], &lab.users[1], lab.port);
    let by_address = format!("{u0}@127.0.0.1:{port}");
    let by_name = format!("{u0}@localhost:{port}");
    let other = format!("{u1}@127.0.0.3:{port}");
    let machines = [by_address.clone(), by_name.clone(), other.clone()];
    let dir = lab.init(
        "twonames",
        &machines,
        &["--ssh-trust-on-first-use", "--key", &key],
    );
    lab.start_agent(&dir);
    let d = dir.to_str().unwrap();
    console(&["-C", d, "deploy"]);
    wait_for(Duration::from_secs(120), "u0's and u1's peers", || {
        lab.pid(0).is_some() && lab.pid(1).is_some()
    });
    // The status rows (every row fetched from the zones), until the conflict is seen.
    let rows = |status: &serde_json::Value| -> Vec<(String, String, Option<String>)> {
        status["records"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                (
                    r["machine"].as_str().unwrap_or("").to_owned(),
                    r["state"].as_str().unwrap_or("").to_owned(),
                    r["answered_by"].as_str().map(str::to_owned),
                )
            })
            .collect()
    };
    let mut status = serde_json::Value::Null;
    wait_for(Duration::from_secs(120), "a conflict row", || {
        let out = Command::new(console_bin())
            .args(["-C", d, "status", "--json"])
            .output()
            .unwrap();
        status = serde_json::from_slice(&out.stdout).unwrap_or_default();
        rows(&status)
            .iter()
            .any(|(_, state, _)| state == "conflict")
    });
    // Whichever name was deployed first owns the account's peer; the other is the conflict,
    // answered by it.
    let rows = rows(&status);
    let conflict: Vec<_> = rows.iter().filter(|(_, s, _)| s == "conflict").collect();
    assert_eq!(conflict.len(), 1, "{rows:?}");
    let (asked, _, answered) = conflict[0];
    let owner = if *asked == by_name {
        &by_address
    } else {
        &by_name
    };
    assert!(asked == &by_name || asked == &by_address, "{rows:?}");
    assert_eq!(answered.as_deref(), Some(owner.as_str()), "{rows:?}");
    assert!(
        rows.iter().any(|(m, s, _)| m == &other && s == "running"),
        "{rows:?}"
    );
    // Not counted as deployed: two peers for three entries.
    assert_eq!(status["deployed"], 2, "{status}");
    assert_eq!(status["conflicts"], serde_json::json!([asked]), "{status}");
    let human = console(&["-C", d, "status"]);
    let line = human
        .lines()
        .find(|l| l.starts_with(asked.as_str()))
        .unwrap();
    assert!(line.ends_with(&format!("answered by {owner}")), "{human}");
    // Logged by the peer that pinged (any of them: every peer's log is read).
    let logs: String = (0..2)
        .filter_map(|i| std::fs::read_to_string(MachineFiles::new(&lab.root(i)).log()).ok())
        .collect();
    assert!(
        logs.contains(&format!("CONFLICT: pinging {asked}"))
            && logs.contains(&format!("reached the peer of {owner}")),
        "{logs}"
    );
    // `wait --deployed all` does not count it: it times out.
    let out = Command::new(console_bin())
        .args(["-C", d, "wait", "--deployed", "all", "--timeout", "3s"])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "wait --deployed all counted the conflict"
    );
    console(&["-C", d, "shutdown"]);
    console(&["-C", d, "agent", "stop"]);
}

/// `status --json` of cluster directory `d`: the parsed answer (null when it failed).
fn status_json(d: &str) -> serde_json::Value {
    let out = Command::new(console_bin())
        .args(["-C", d, "status", "--json"])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

/// The `reason` of the row of the machine whose name contains `name` in `status`.
fn row_reason(status: &serde_json::Value, name: &str) -> Option<String> {
    status["records"]
        .as_array()?
        .iter()
        .find(|r| r["machine"].as_str().is_some_and(|m| m.contains(name)))?["reason"]
        .as_str()
        .map(str::to_owned)
}

/// How many logins the machine at `root` has counted (one byte each).
fn logins(root: &Path) -> u64 {
    std::fs::metadata(MachineFiles::new(root).logins()).map_or(0, |m| m.len())
}

/// The peer logs of machines `range`, joined.
fn peer_logs(lab: &SshLab, range: std::ops::Range<usize>) -> String {
    range
        .map(|i| std::fs::read_to_string(MachineFiles::new(&lab.root(i)).log()).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n-----\n")
}

/// Issue 15 kind 11: a new user's second cluster on the machines of a first one that was
/// shut down. Without `--take-over` the first machine refuses the new package saying what is
/// there and what to do; once that machine is cleared by hand, the new cluster's peer there
/// finds the old install on the second machine and leaves it alone (no restart while it is
/// stopped, no kill once it runs, none by `shutdown` either), saying why in that machine's row
/// and once in its log. A cluster made with `init --take-over` replaces the old install on
/// every machine (the console's deployment and the peers' alike, a running old peer too).
#[test]
fn ssh_a_new_cluster_takes_over_the_machines_of_an_old_one_only_when_told() {
    let Some((_serial, lab)) = SshLab::serial("ed25519") else {
        return;
    };
    let two = &lab.machines()[..2];
    let second_host = "127.0.0.3"; // machine 1's address, in its row's name
    let known = lab.base().join("known_hosts");
    std::fs::write(&known, lab.known_hosts(0..2)).unwrap();
    let known = known.to_str().unwrap();

    // The first cluster, deployed and shut down.
    let key = lab.key.to_str().unwrap().to_owned();
    let first = lab.init("first", two, &["--known-hosts", known, "--key", &key]);
    lab.start_agent(&first);
    let f = first.to_str().unwrap();
    console(&["-C", f, "deploy"]);
    wait_for(Duration::from_secs(120), "2 machines deployed", || {
        (0..2).all(|i| lab.pid(i).is_some())
    });
    console(&["-C", f, "shutdown"]);
    wait_for(
        Duration::from_secs(60),
        "the first cluster's peers gone",
        || (0..2).all(|i| lab.pid(i).is_none()),
    );
    console(&["-C", f, "agent", "stop"]);
    let old_cluster = std::fs::read_to_string(MachineFiles::new(&lab.root(1)).cluster())
        .expect("the installer writes the cluster file");

    // A new key (the new cluster's release key), allowed to log in as well.
    let key2 = lab.base().join("id2");
    sh(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "smon-test-2", "-f"])
        .arg(&key2));
    let mut authorized = std::fs::read_to_string(lab.base().join("authorized_keys")).unwrap();
    authorized += &std::fs::read_to_string(key2.with_extension("pub")).unwrap();
    std::fs::write(lab.base().join("authorized_keys"), authorized).unwrap();
    let key2 = key2.to_str().unwrap();

    // Without --take-over: refused, saying what is there and what to do.
    let second = lab.init(
        "second",
        two,
        &[
            "--known-hosts",
            known,
            "--key",
            key2,
            "--unresponsive-grace",
            "3s",
        ],
    );
    let s = second.to_str().unwrap();
    console(&["-C", s, "agent", "start"]);
    let err = console_fails(&["-C", s, "deploy"]);
    assert!(
        err.contains("holds the smon install of another cluster")
            && err.contains("release key SHA256:")
            && err.contains("its peer is not running")
            && err.contains("init --take-over"),
        "{err}"
    );
    assert!((0..2).all(|i| lab.pid(i).is_none()));

    // The operator clears the first machine as told; the new cluster's peer there then finds
    // the old, stopped install on the second machine: not restarted, and its row says why.
    std::fs::remove_dir_all(lab.root(0)).unwrap();
    console(&["-C", s, "deploy"]);
    let mut status = serde_json::Value::Null;
    wait_for(
        Duration::from_secs(120),
        "the second machine's reason",
        || {
            status = status_json(s);
            row_reason(&status, second_host).is_some_and(|r| r.contains("another cluster"))
        },
    );
    let reason = row_reason(&status, second_host).unwrap();
    let old_id = smon_proto::ClusterConfig::load(&first)
        .unwrap()
        .cluster_id();
    assert!(
        reason.contains("holds another cluster's install")
            && reason.contains(&format!("cluster id {old_id}"))
            && reason.contains("its peer is not running")
            && reason.contains("init --take-over"),
        "{reason}"
    );
    // Several more logins there (each found it and left it alone): still not running, the
    // old install untouched, and the peer said so once.
    let root1 = lab.root(1);
    let seen = logins(&root1);
    wait_for(Duration::from_secs(60), "3 more logins to it", || {
        logins(&root1) >= seen + 3
    });
    assert_eq!(lab.pid(1), None, "{}", peer_logs(&lab, 0..2));
    assert_eq!(
        std::fs::read_to_string(MachineFiles::new(&root1).cluster()).unwrap(),
        old_cluster
    );
    let said = peer_logs(&lab, 0..1)
        .matches("not restarted, killed or deployed over")
        .count();
    assert_eq!(said, 1, "{}", peer_logs(&lab, 0..1));

    // The old peer started again by its owner: it runs but never answers the new cluster's
    // pings. It is not judged unresponsive and killed (the grace is 3 s), nor by shutdown.
    let old_peer = root1.join("current/smon-peer");
    sh(Command::new("runuser")
        .args(["-u", &lab.users[1], "--"])
        .arg(&old_peer)
        .arg("start")
        .arg("--root")
        .arg(&root1));
    let old_pid = lab.pid(1).expect("the old peer runs");
    wait_for(
        Duration::from_secs(60),
        "the reason naming the old peer",
        || {
            status = status_json(s);
            row_reason(&status, second_host)
                .is_some_and(|r| r.contains(&format!("its peer runs (pid {old_pid})")))
        },
    );
    let seen = logins(&root1);
    wait_for(Duration::from_secs(60), "3 more logins to it", || {
        logins(&root1) >= seen + 3
    });
    assert_eq!(lab.pid(1), Some(old_pid), "{}", peer_logs(&lab, 0..2));
    let out = Command::new(console_bin())
        .args(["-C", s, "shutdown"])
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for(
        Duration::from_secs(60),
        "the new cluster's peer gone",
        || lab.pid(0).is_none(),
    );
    assert_eq!(lab.pid(1), Some(old_pid), "shutdown: {said}");
    console(&["-C", s, "agent", "stop"]);

    // With --take-over: both machines run the new cluster's peers (the second deployed by
    // the first's peer, over the old peer that still ran there).
    let third = lab.init(
        "third",
        two,
        &["--known-hosts", known, "--key", key2, "--take-over"],
    );
    let t = third.to_str().unwrap();
    console(&["-C", t, "agent", "start"]);
    console(&["-C", t, "deploy"]);
    let taken = wait_until(Duration::from_secs(120), || {
        status = status_json(t);
        status["deployed"] == 2 && lab.pid(0).is_some() && lab.pid(1).is_some_and(|p| p != old_pid)
    });
    assert!(
        taken,
        "the new cluster is not on 2 machines: {status}\nlogs:\n{}",
        peer_logs(&lab, 0..2)
    );
    assert!(!is_alive(old_pid), "the old peer still runs");
    console(&["-C", t, "shutdown"]);
    console(&["-C", t, "agent", "stop"]);
}

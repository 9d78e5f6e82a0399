//! `up`: make a lab of N machines (hosts) with K accounts each.
//!
//! The record (DIR/lab.json) is written before anything is made on the host, and every name
//! comes from its run id, so that `down` removes whatever a failed or killed `up` left.

use std::{
    os::unix::fs::PermissionsExt,
    path::Path,
    sync::{
        Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use crate::{
    cgroup,
    error::{LabError, Result},
    layout::{LabState, MAX_ACCOUNTS, MAX_HOSTS},
    net, run, sshd, subnet, users,
};

/// Machines are set up by this many threads: the steps are mostly waiting on `ip`,
/// `ssh-keygen` and `useradd` processes.
const WORKERS: usize = 4;

/// What `up` makes.
#[derive(Clone, Copy, Debug)]
pub struct UpOptions {
    /// Lab machines (1 to 253).
    pub machines: usize,
    /// SSH accounts per machine (1 to 16): each is one line of the machines file.
    pub users_per_machine: usize,
}

/// Fail early, with what to install, unless this host can run a lab.
pub fn preflight() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(LabError::NotRoot);
    }
    run::require(&[
        ("ip", "iproute2"),
        ("tc", "iproute2"),
        (sshd::SSHD, "openssh-server"),
        ("ssh-keygen", "openssh-client"),
        ("useradd", "passwd"),
        ("userdel", "passwd"),
    ])
}

/// Refuse sizes the lab cannot have (before anything is made).
pub fn check_options(options: &UpOptions) -> Result<()> {
    if !(1..=MAX_HOSTS).contains(&options.machines) {
        return Err(LabError::bad(
            format!("{} machines", options.machines),
            format!("a lab has 1 to {MAX_HOSTS} (one /24)"),
        ));
    }
    if !(1..=MAX_ACCOUNTS).contains(&options.users_per_machine) {
        return Err(LabError::bad(
            format!("--users-per-machine {}", options.users_per_machine),
            format!("1 to {MAX_ACCOUNTS}"),
        ));
    }
    Ok(())
}

/// Make DIR (new, or empty), mode 0755 so the lab's users reach their homes; its absolute path.
pub fn prepare_dir(dir: &Path) -> Result<std::path::PathBuf> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(LabError::DirNotEmpty {
                    path: dir.to_owned(),
                });
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(LabError::io(dir))?;
        }
        Err(e) => return Err(LabError::io(dir)(e)),
    }
    let dir = std::fs::canonicalize(dir).map_err(LabError::io(dir))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
        .map_err(LabError::io(&dir))?;
    users::check_traversable(&dir)?;
    Ok(dir)
}

/// A run id whose bridge and namespaces do not exist yet.
fn fresh_id() -> String {
    loop {
        let id = LabState::random_id();
        let probe = LabState::new(id.clone(), "/".into(), 1, 1);
        let bridge_taken = std::path::Path::new("/sys/class/net")
            .join(probe.bridge())
            .exists();
        let netns_taken = std::path::Path::new("/run/netns")
            .join(probe.netns(1))
            .exists();
        if !bridge_taken && !netns_taken && users::left_of(&id).is_empty() {
            return id;
        }
    }
}

/// Make the lab in `dir` (which `prepare_dir` made) and record it; on failure the caller
/// runs `down`.
pub fn build(dir: &Path, options: &UpOptions) -> Result<LabState> {
    let mut lab = LabState::new(
        fresh_id(),
        dir.to_owned(),
        options.machines,
        options.users_per_machine,
    );
    lab.save()?;
    lab.cgroup = cgroup::create_lab(&lab.id);
    lab.save()?;
    let chosen = subnet::choose_and_claim(|s| net::create_bridge(&lab, s))?;
    lab.subnet = Some(chosen);
    lab.save()?;

    sshd::keygen(&lab.key(), &format!("smon-lab {}", lab.id))?;
    let authorized = dir.join("authorized_keys");
    std::fs::copy(lab.key().with_extension("pub"), &authorized)
        .map_err(LabError::io(&authorized))?;

    let next = AtomicUsize::new(1);
    let failure: Mutex<Option<LabError>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..WORKERS.min(lab.hosts) {
            scope.spawn(|| {
                loop {
                    let host = next.fetch_add(1, Ordering::Relaxed);
                    if host > lab.hosts || failure.lock().unwrap().is_some() {
                        return;
                    }
                    if let Err(e) = make_machine(&lab, host) {
                        failure.lock().unwrap().get_or_insert(e);
                    }
                }
            });
        }
    });
    if let Some(e) = failure.into_inner().unwrap() {
        return Err(e);
    }
    let addrs: Vec<_> = lab.host_indices().map(|h| (h, lab.address(h))).collect();
    sshd::wait_listening(&addrs)?;
    write_machines_and_known_hosts(&lab)?;
    lab.ready = true;
    lab.save()?;
    Ok(lab)
}

/// One machine: namespace and link, cgroup, accounts, sshd.
fn make_machine(lab: &LabState, host: usize) -> Result<()> {
    let dir = lab.host_dir(host);
    std::fs::create_dir_all(&dir).map_err(LabError::io(&dir))?;
    net::create_machine(lab, host)?;
    if let Some(cg) = lab.host_cgroup(host) {
        cgroup::create(&cg)?;
    }
    for account in 1..=lab.users_per_machine {
        users::create(lab, host, account)?;
    }
    sshd::configure(lab, host)?;
    sshd::start(lab, host)
}

fn write_machines_and_known_hosts(lab: &LabState) -> Result<()> {
    let machines: String = lab.entries().iter().map(|e| format!("{e}\n")).collect();
    let path = lab.machines_file();
    std::fs::write(&path, machines).map_err(LabError::io(&path))?;
    let mut known = String::new();
    for host in lab.host_indices() {
        known += &sshd::known_hosts_line(lab, host)?;
    }
    let path = lab.known_hosts();
    std::fs::write(&path, known).map_err(LabError::io(&path))
}

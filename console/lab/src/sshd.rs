//! Each lab machine's own OpenSSH sshd: its own host key and config under DIR/m<host>/,
//! started inside the machine's network namespace and cgroup, so that everything started
//! over SSH runs there too.

use std::{
    ffi::CString,
    net::{Ipv4Addr, SocketAddr, TcpStream},
    os::unix::{ffi::OsStrExt, process::CommandExt},
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use crate::{
    cgroup,
    error::{LabError, Result},
    layout::LabState,
    run,
};

pub const SSHD: &str = "/usr/sbin/sshd";
/// Every machine's sshd listens on the standard port of its own address.
pub const PORT: u16 = 22;
const START_WITHIN: Duration = Duration::from_secs(20);

fn host_key(lab: &LabState, host: usize) -> PathBuf {
    lab.host_dir(host).join("ssh_host_ed25519_key")
}

fn config_path(lab: &LabState, host: usize) -> PathBuf {
    lab.host_dir(host).join("sshd_config")
}

/// Generate `path` (and `path.pub`): an ed25519 key without passphrase.
pub fn keygen(path: &std::path::Path, comment: &str) -> Result<()> {
    run::run(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
            .arg(path),
    )
    .map(drop)
}

/// Machine `host`'s host key and sshd_config. Many peers log in at once while they deploy:
/// sshd's limits on concurrent unauthenticated connections and sessions are raised.
pub fn configure(lab: &LabState, host: usize) -> Result<()> {
    let key = host_key(lab, host);
    keygen(&key, &format!("smon-lab {} machine {host}", lab.id))?;
    let users: Vec<String> = (1..=lab.users_per_machine)
        .map(|a| lab.user(host, a))
        .collect();
    let config = format!(
        "ListenAddress {addr}:{PORT}\n\
         HostKey {key}\n\
         PidFile {pid}\n\
         AuthorizedKeysFile {dir}/authorized_keys\n\
         AllowUsers {users}\n\
         StrictModes no\n\
         UsePAM no\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         PubkeyAuthentication yes\n\
         PermitRootLogin no\n\
         UseDNS no\n\
         MaxStartups 200\n\
         MaxSessions 100\n\
         LogLevel VERBOSE\n",
        addr = lab.address(host),
        key = key.display(),
        pid = lab.host_dir(host).join("sshd.pid").display(),
        dir = lab.dir.display(),
        users = users.join(" "),
    );
    let path = config_path(lab, host);
    std::fs::write(&path, config).map_err(LabError::io(&path))
}

/// The known_hosts line of machine `host` (its address, port 22, its host key).
pub fn known_hosts_line(lab: &LabState, host: usize) -> Result<String> {
    let path = host_key(lab, host).with_extension("pub");
    let text = std::fs::read_to_string(&path).map_err(LabError::io(&path))?;
    let fields: Vec<&str> = text.split_whitespace().take(2).collect();
    Ok(format!("{} {}\n", lab.address(host), fields.join(" ")))
}

/// Start machine `host`'s sshd inside its namespace (and cgroup); it daemonizes.
pub fn start(lab: &LabState, host: usize) -> Result<()> {
    std::fs::create_dir_all("/run/sshd").map_err(LabError::io("/run/sshd"))?;
    let log = lab.host_dir(host).join("sshd.log");
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &lab.netns(host), SSHD, "-f"])
        .arg(config_path(lab, host))
        .arg("-E")
        .arg(&log);
    if let Some(cg) = lab.host_cgroup(host) {
        let procs = CString::new(cg.join("cgroup.procs").as_os_str().as_bytes())
            .expect("a path without NUL");
        // SAFETY: join_in_child only makes async-signal-safe calls.
        unsafe {
            cmd.pre_exec(move || cgroup::join_in_child(&procs));
        }
    }
    run::run(&mut cmd)?;
    Ok(())
}

/// Wait until the sshd of each `(host, address)` accepts connections from the host.
pub fn wait_listening(addrs: &[(usize, Ipv4Addr)]) -> Result<()> {
    let deadline = Instant::now() + START_WITHIN;
    for &(host, addr) in addrs {
        let sock = SocketAddr::from((addr, PORT));
        while TcpStream::connect_timeout(&sock, Duration::from_millis(500)).is_err() {
            if Instant::now() > deadline {
                return Err(LabError::Timeout {
                    what: format!("machine {host}'s sshd on {sock}"),
                    seconds: START_WITHIN.as_secs(),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(())
}

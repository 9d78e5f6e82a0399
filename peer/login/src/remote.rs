//! The login abstraction: a [`Login`] opens a [`Session`] on a machine, which runs shell
//! scripts there and uploads files to it. Deploy and recover are written once against it, for local machines (a
//! directory on this host) and SSH machines alike.

use std::{path::Path, path::PathBuf, process::Stdio, time::Duration};

use smon_proto::MachineId;
use tokio::{io::AsyncWriteExt, process::Command};

use crate::{
    Error, Login,
    error::io_err,
    shell::{checked, shell_quote},
    ssh::{self, SshSession},
};

impl Login {
    /// Log in to `machine`: a local machine needs nothing (its directory is here), an SSH
    /// machine is connected to and authenticated through the agent.
    pub async fn open(&self, machine: &MachineId) -> Result<Session, Error> {
        let (remote, root) = match machine {
            MachineId::Local { name } => {
                let dir = self.config().local_dir(name);
                let shell = shell_quote(&dir.to_string_lossy());
                (Remote::Local(dir), shell)
            }
            MachineId::Ssh { user, host, port } => {
                let session = ssh::connect(self, machine, user.as_deref(), host, *port).await?;
                (Remote::Ssh(Box::new(session)), SSH_ROOT.to_owned())
            }
        };
        Ok(Session { remote, root })
    }
}

/// How a session reaches its machine.
enum Remote {
    /// A machine that is a directory on this host (the directory): commands run here.
    Local(PathBuf),
    /// An SSH machine, logged in through the authentication agent.
    Ssh(Box<SshSession>),
}

/// A logged-in session on a machine.
pub struct Session {
    remote: Remote,
    /// A shell word that expands to the machine's smon directory.
    root: String,
}

/// Where smon lives on an SSH machine (a shell word).
pub const SSH_ROOT: &str = r#""$HOME/.smon""#;
/// How long one upload may take.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(120);

impl Session {
    /// A shell word that expands to the machine's smon directory, for scripts.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// Whether the machine is a directory on this host (no network between us and it).
    pub fn is_local(&self) -> bool {
        matches!(self.remote, Remote::Local(_))
    }

    /// Run `script` with `sh`; its standard output on success, an error naming the exit
    /// status and the last line of standard error otherwise.
    pub async fn exec(&mut self, script: &str, timeout: Duration) -> Result<String, Error> {
        match &mut self.remote {
            Remote::Local(_) => run_here(script, timeout).await,
            Remote::Ssh(session) => session.exec(script, timeout).await,
        }
    }

    /// Write `data` to `rel` under the machine's root, with `mode`.
    pub async fn upload(&mut self, rel: &str, data: &[u8], mode: u32) -> Result<(), Error> {
        match &mut self.remote {
            Remote::Local(dir) => write_file(&dir.join(rel), data, mode).await,
            Remote::Ssh(session) => {
                let dest = format!("{}/{}", self.root, shell_quote(rel));
                (session.upload(&dest, Some(data), None, mode, UPLOAD_TIMEOUT)).await
            }
        }
    }

    /// Copy the local file `src` to `rel` under the machine's root, with `mode`, streaming it
    /// (a package is never held whole in memory).
    pub async fn upload_file(&mut self, rel: &str, src: &Path, mode: u32) -> Result<(), Error> {
        match &mut self.remote {
            Remote::Local(dir) => copy_file(src, &dir.join(rel), mode).await,
            Remote::Ssh(session) => {
                let dest = format!("{}/{}", self.root, shell_quote(rel));
                (session.upload(&dest, None, Some(src), mode, UPLOAD_TIMEOUT)).await
            }
        }
    }
}

/// Run `script` with `sh` on this host (a local machine).
async fn run_here(script: &str, timeout: Duration) -> Result<String, Error> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(Error::Shell)?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let run = async { tokio::join!(read_all(stdout), read_all(stderr), child.wait()) };
    let (out, err, status) =
        tokio::time::timeout(timeout, run)
            .await
            .map_err(|_| Error::Timeout {
                what: "a command".into(),
                after: timeout,
            })?;
    let status = status.map_err(Error::Shell)?;
    checked(status.success(), status.to_string(), &out, &err)
}

async fn read_all(pipe: Option<impl tokio::io::AsyncRead + Unpin>) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Some(mut p) = pipe {
        let _ = tokio::io::AsyncReadExt::read_to_end(&mut p, &mut buf).await;
    }
    buf
}

/// A temporary name next to `path`, unique to this process.
fn temporary(path: &Path) -> PathBuf {
    path.with_extension(format!("tmp-{}", std::process::id()))
}

/// Copy `src` to `dest` completely (temporary name, fsync, mode, rename).
async fn copy_file(src: &Path, dest: &Path, mode: u32) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    let tmp = temporary(dest);
    let io = io_err(dest);
    tokio::fs::copy(src, &tmp)
        .await
        .map_err(|source| Error::Copy {
            from: src.to_owned(),
            to: dest.to_owned(),
            source,
        })?;
    let file = tokio::fs::File::open(&tmp).await.map_err(&io)?;
    file.sync_all().await.map_err(&io)?;
    let permissions = std::fs::Permissions::from_mode(mode);
    tokio::fs::set_permissions(&tmp, permissions)
        .await
        .map_err(&io)?;
    tokio::fs::rename(&tmp, dest).await.map_err(&io)
}

/// Write a file completely (temporary name, fsync, rename), so a reader never sees half of it.
async fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<(), Error> {
    let tmp = temporary(path);
    let io = io_err(path);
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .await
        .map_err(&io)?;
    file.write_all(data).await.map_err(&io)?;
    file.sync_all().await.map_err(&io)?;
    drop(file);
    tokio::fs::rename(&tmp, path).await.map_err(io)
}

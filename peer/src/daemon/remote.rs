//! The login abstraction: run a shell script on a machine and upload a file to it. Deploy and
//! recover are written once against it, for local machines (a directory on this host) and SSH
//! machines alike.

use std::{path::Path, process::Stdio, time::Duration};

use smon_proto::{ClusterConfig, MachineId};
use tokio::{io::AsyncWriteExt, process::Command};

use super::DaemonError;

/// A logged-in session on a machine.
pub enum Remote {
    /// A machine that is a directory on this host: commands run here.
    Local,
    /// An SSH machine, logged in through the authentication agent.
    Ssh(Box<super::ssh::SshSession>),
}

/// Where smon lives on an SSH machine (a shell word).
pub const SSH_ROOT: &str = r#""$HOME/.smon""#;
/// How long one upload may take.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(120);

/// How scripts refer to the machine's smon directory.
pub struct MachineRoot {
    /// A shell word that expands to the root directory.
    pub shell: String,
    /// For local machines, the real path.
    pub local: Option<std::path::PathBuf>,
}

/// Log in to `machine`.
pub async fn login(
    config: &ClusterConfig,
    machine: &MachineId,
) -> Result<(Remote, MachineRoot), DaemonError> {
    match machine {
        MachineId::Local { name } => {
            let dir = config.local_dir(name);
            let shell = shell_quote(&dir.to_string_lossy());
            Ok((
                Remote::Local,
                MachineRoot {
                    shell,
                    local: Some(dir),
                },
            ))
        }
        MachineId::Ssh { .. } => {
            let session = super::ssh::connect(config, machine).await?;
            Ok((
                Remote::Ssh(Box::new(session)),
                MachineRoot {
                    shell: SSH_ROOT.into(),
                    local: None,
                },
            ))
        }
    }
}

pub fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

impl Remote {
    /// Run `script` with `sh`; its standard output on success, an error naming the exit
    /// status and the last line of standard error otherwise.
    pub async fn exec(&mut self, script: &str, timeout: Duration) -> Result<String, DaemonError> {
        match self {
            Remote::Local => {
                let mut child = Command::new("sh")
                    .arg("-c")
                    .arg(script)
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .kill_on_drop(true)
                    .spawn()
                    .map_err(|e| DaemonError::Login(format!("sh: {e}")))?;
                let stdout = child.stdout.take();
                let stderr = child.stderr.take();
                let run = async {
                    let (out, err, status) =
                        tokio::join!(read_all(stdout), read_all(stderr), child.wait());
                    (out, err, status)
                };
                let (out, err, status) =
                    tokio::time::timeout(timeout, run).await.map_err(|_| {
                        DaemonError::Login(format!("command timed out after {timeout:?}"))
                    })?;
                let status = status.map_err(|e| DaemonError::Login(e.to_string()))?;
                if !status.success() {
                    let err = String::from_utf8_lossy(&err);
                    let last = err
                        .lines()
                        .rev()
                        .find(|l| !l.trim().is_empty())
                        .unwrap_or("");
                    return Err(DaemonError::Login(format!(
                        "remote command failed ({status}): {last}"
                    )));
                }
                Ok(String::from_utf8_lossy(&out).into_owned())
            }
            Remote::Ssh(session) => session.exec(script, timeout).await,
        }
    }

    /// Write `data` to `rel` under the machine's root, with `mode`.
    pub async fn upload(
        &mut self,
        root: &MachineRoot,
        rel: &str,
        data: &[u8],
        mode: u32,
    ) -> Result<(), DaemonError> {
        match self {
            Remote::Local => {
                let base = root.local.as_deref().ok_or_else(|| {
                    DaemonError::Login("local machine without a directory".into())
                })?;
                write_file(&base.join(rel), data, mode).await
            }
            Remote::Ssh(session) => {
                let dest = format!("{}/{}", root.shell, shell_quote(rel));
                session
                    .upload(&dest, Some(data), None, mode, UPLOAD_TIMEOUT)
                    .await
            }
        }
    }
}

async fn read_all(pipe: Option<impl tokio::io::AsyncRead + Unpin>) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Some(mut p) = pipe {
        let _ = tokio::io::AsyncReadExt::read_to_end(&mut p, &mut buf).await;
    }
    buf
}

impl Remote {
    /// Copy the local file `src` to `rel` under the machine's root, with `mode`, streaming it
    /// (a package is never held whole in memory).
    pub async fn upload_file(
        &mut self,
        root: &MachineRoot,
        rel: &str,
        src: &Path,
        mode: u32,
    ) -> Result<(), DaemonError> {
        match self {
            Remote::Local => {
                let base = root.local.as_deref().ok_or_else(|| {
                    DaemonError::Login("local machine without a directory".into())
                })?;
                let dest = base.join(rel);
                let tmp = dest.with_extension(format!("tmp-{}", std::process::id()));
                let io = |e: std::io::Error| DaemonError::Io(format!("{}: {e}", dest.display()));
                tokio::fs::copy(src, &tmp).await.map_err(io)?;
                let file = tokio::fs::File::open(&tmp).await.map_err(io)?;
                file.sync_all().await.map_err(io)?;
                use std::os::unix::fs::PermissionsExt;
                tokio::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
                    .await
                    .map_err(io)?;
                tokio::fs::rename(&tmp, &dest).await.map_err(io)
            }
            Remote::Ssh(session) => {
                let dest = format!("{}/{}", root.shell, shell_quote(rel));
                session
                    .upload(&dest, None, Some(src), mode, UPLOAD_TIMEOUT)
                    .await
            }
        }
    }
}

/// Write a file completely (temporary name, fsync, rename), so a reader never sees half of it.
pub async fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<(), DaemonError> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let io = |e: std::io::Error| DaemonError::Io(format!("{}: {e}", path.display()));
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .await
        .map_err(io)?;
    file.write_all(data).await.map_err(io)?;
    file.sync_all().await.map_err(io)?;
    drop(file);
    tokio::fs::rename(&tmp, path).await.map_err(io)
}

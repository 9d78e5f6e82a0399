//! Who signs this cluster's releases and application packages: `DIR/release.key` when `init`
//! made one (clusters without an agent), otherwise the cluster's agent, whose key is then the
//! release key (`init --key` / `--ssh-agent`). The agent signs only for the holder of the
//! operator key, which is this directory's and no peer's.

use std::path::PathBuf;

use anyhow::{Context, bail};
use smon_proto::{
    CONTROL_NAMESPACE, DesiredState, LiveTag, MEMBERSHIP_NAMESPACE, MachineAppDesired, Membership,
    OperatorKey, PackageManifest, SignedLiveTag, app_desired_signing_bytes, release, tarpc,
    transport,
};

use crate::cluster_dir::{ClusterDir, write_atomic};

const AGENT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// Sign `manifest` for this cluster; the signature is checked against its release key.
pub async fn sign(dir: &ClusterDir, manifest: &mut PackageManifest) -> anyhow::Result<()> {
    if dir.signs_releases() {
        release::sign_manifest(manifest, &dir.release_key()?)?;
    } else {
        *manifest = sign_by_agent(dir, manifest).await?;
    }
    let trusted = dir.trusted_release_key()?;
    release::verify_signature(manifest, &trusted).context("the new signature")?;
    Ok(())
}

/// A connection to the cluster's agent, the operator key, and the agent's address.
async fn agent(
    dir: &ClusterDir,
) -> anyhow::Result<(smon_proto::AgentServiceClient, OperatorKey, String)> {
    let start = || {
        format!(
            "this cluster's releases and memberships are signed by its agent: start it with \
             `smon-console -C {} agent start`",
            dir.path.display()
        )
    };
    let addr = dir.config.agent.clone().with_context(start)?;
    let operator = OperatorKey::load(&dir.files().operator_key())?;
    let client = transport::agent_client(addr.as_str(), &dir.key, AGENT_TIMEOUT)
        .await
        .with_context(|| format!("the agent at {addr}; {}", start()))?;
    Ok((client, operator, addr))
}

fn deadline() -> tarpc::context::Context {
    let mut ctx = tarpc::context::current();
    ctx.deadline = std::time::Instant::now() + AGENT_TIMEOUT;
    ctx
}

async fn sign_by_agent(
    dir: &ClusterDir,
    manifest: &PackageManifest,
) -> anyhow::Result<PackageManifest> {
    let (client, operator, addr) = agent(dir).await?;
    client
        .sign_package(deadline(), manifest.clone(), operator.prove(manifest))
        .await
        .with_context(|| format!("the agent at {addr}"))?
        .map_err(|refusal| anyhow::anyhow!("the agent at {addr} refused to sign: {refusal}"))
}

/// Sign control state's `bytes` ([`smon_proto::control_signing_bytes`]) with this cluster's
/// release key: the directory's, or the agent's for the holder of the operator key. Not
/// checked here: the peers are the judges (a directory whose keys are not the cluster's has
/// its actions refused by every peer, and the refusal is what the operator sees).
pub async fn sign_control(dir: &ClusterDir, bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
    if dir.signs_releases() {
        return Ok(release::sign_bytes(
            CONTROL_NAMESPACE,
            bytes,
            &dir.release_key()?,
        )?);
    }
    let (client, operator, addr) = agent(dir).await?;
    client
        .sign_control(deadline(), bytes.to_vec(), operator.prove_control(bytes))
        .await
        .with_context(|| format!("the agent at {addr}"))?
        .map_err(|refusal| anyhow::anyhow!("the agent at {addr} refused to sign: {refusal}"))
}

/// The livetag `tag`, signed for this cluster.
pub async fn signed_livetag(dir: &ClusterDir, tag: LiveTag) -> anyhow::Result<SignedLiveTag> {
    let signature = sign_control(dir, &SignedLiveTag::signing_bytes(&tag)).await?;
    Ok(SignedLiveTag { tag, signature })
}

/// The signature of application `name`'s cluster-wide desired state at revision `rev`.
pub async fn sign_app_desired(
    dir: &ClusterDir,
    name: &str,
    desired: DesiredState,
    rev: u64,
) -> anyhow::Result<Vec<u8>> {
    sign_control(dir, &app_desired_signing_bytes(name, desired, rev)).await
}

/// `desired` (its signature empty) signed for this cluster.
pub async fn sign_machine_app_desired(
    dir: &ClusterDir,
    mut desired: MachineAppDesired,
) -> anyhow::Result<MachineAppDesired> {
    desired.signature = sign_control(dir, &desired.signing_bytes()).await?;
    Ok(desired)
}

/// Sign `membership` as a whole (machines, pinned host keys, version) for this cluster.
pub async fn sign_membership(dir: &ClusterDir, membership: &mut Membership) -> anyhow::Result<()> {
    let blob = membership.signing_bytes();
    let signature = if dir.signs_releases() {
        release::sign_bytes(MEMBERSHIP_NAMESPACE, &blob, &dir.release_key()?)?
    } else {
        let (client, operator, addr) = agent(dir).await?;
        client
            .sign_membership(deadline(), blob.clone(), operator.prove_membership(&blob))
            .await
            .with_context(|| format!("the agent at {addr}"))?
            .map_err(|refusal| anyhow::anyhow!("the agent at {addr} refused to sign: {refusal}"))?
    };
    membership.set_signature(signature);
    // Not checked here, as for control state: the peers are the judges, and their refusal is
    // what the operator of a directory with the wrong keys sees.
    Ok(())
}

/// The cluster's membership, signed: `init` leaves it unsigned when the agent is the
/// signer, and it is signed the first time it is needed.
pub async fn signed_membership(dir: &ClusterDir) -> anyhow::Result<Membership> {
    let mut membership = dir.membership.clone();
    if membership
        .verify_signature(&dir.trusted_release_key()?)
        .is_err()
    {
        sign_membership(dir, &mut membership).await?;
        write_atomic(&dir.files().membership_blob(), &membership.encode(), 0o644)?;
    }
    Ok(membership)
}

/// The cluster's peer package, signed: `init` leaves it unsigned when the agent is the signer,
/// and it is signed the first time it is needed.
pub async fn signed_package(dir: &ClusterDir) -> anyhow::Result<PathBuf> {
    let path = dir.package_path();
    let file = std::fs::read(&path).with_context(|| format!("{}", path.display()))?;
    let (binary, mut manifest) =
        release::split_package(&file).with_context(|| format!("{}", path.display()))?;
    let trusted = dir.trusted_release_key()?;
    if release::verify_signature(&manifest, &trusted).is_ok() {
        return Ok(path);
    }
    if !manifest.signature.is_empty() {
        bail!(
            "{}: signed, but not by the cluster's release key",
            path.display()
        );
    }
    sign(dir, &mut manifest).await?;
    write_atomic(&path, &release::encode_package(binary, &manifest), 0o755)?;
    Ok(path)
}

//! The RPC services (tarpc traits) of the peer and the agent; their messages are the wire
//! types of `smon-proto-types` (re-exported by this crate).
//!
//! The peer service starts from the paper's RPC table (000, Table 1) and adds what the
//! console needs. The daemon maps the core's [`PeerCall`] onto the tarpc client with
//! [`InvokePeerCall::invoke`].

use crate::{
    AppOffer, AppReply, AppStatus, ChallengeRequest, Chunk, ChunkRequest, ClusterView,
    ControlAction, LogChunk, LogRequest, MachineAppDesired, MemberReply, PackageManifest, PeerCall,
    PeerReply, Ping, Pong, Refusal, SignedLiveTag, ZoneRecords, ZoneRecordsRequest,
};

#[tarpc::service]
pub trait PeerService {
    async fn ping(ping: Ping) -> Pong;
    async fn retrieve_peer(req: ChunkRequest) -> Result<Chunk, Refusal>;
    async fn exchange_livetag(tag: SignedLiveTag) -> SignedLiveTag;
    async fn exchange_member(version: u64) -> MemberReply;
    async fn retrieve_member() -> Vec<u8>;
    async fn exchange_app(offer: AppOffer) -> AppReply;
    async fn retrieve_app(name: String, req: ChunkRequest) -> Result<Chunk, Refusal>;
    /// An application's desired state on the answering peer's machine only, signed by the
    /// release key ([`MachineAppDesired`]): refused unless it names this machine and verifies.
    async fn set_app_status(desired: MachineAppDesired) -> Result<(), Refusal>;
    async fn get_app_status(name: Option<String>) -> Vec<AppStatus>;
    async fn cluster_view(since: u64) -> ClusterView;
    async fn control(action: ControlAction) -> Result<String, Refusal>;
    // New calls go last: a call's place is its number on the wire.
    /// A page of a leaf zone's records, answered by a peer of that zone (issue 11): the
    /// console finds one through the zones' representatives in [`ClusterView::zones`].
    async fn zone_records(req: ZoneRecordsRequest) -> Result<ZoneRecords, Refusal>;
    /// A chunk of a machine's log (the peer's own or an application's), read by that
    /// machine's peer: the receiver serves its own machine's, or relays the request once to
    /// the named machine's peer (issue 16). Refusals: `Invalid` (bad application name, a
    /// relayed request for another machine), `NotFound` (no such machine in the membership,
    /// no such application, no log yet), `Unreachable` (the machine's peer did not answer).
    async fn read_log(req: LogRequest) -> Result<LogChunk, Refusal>;
}

#[tarpc::service]
pub trait AgentService {
    /// Sign `req.data`, which must be a genuine SSH user-auth request (RFC 4252 §7) for a
    /// machine of the membership. Returns the SSH signature blob (RFC 4253 §6.6:
    /// `string algorithm || string signature`); an SSH client appends it, length-prefixed, to
    /// the data it asked for to form its `SSH_MSG_USERAUTH_REQUEST`.
    async fn resolve_challenge(req: ChallengeRequest) -> Result<Vec<u8>, Refusal>;
    /// The manifest signed by the agent's key (`signer` and `signature` set; sshsig,
    /// namespace `smon-release`). `proof` is [`crate::OperatorKey::prove`] of the manifest:
    /// only the operator's console holds that key, peers do not.
    async fn sign_package(
        manifest: PackageManifest,
        proof: Vec<u8>,
    ) -> Result<PackageManifest, Refusal>;
    /// The agent's sshsig (PEM, namespace `smon-membership`) of a membership blob (unsigned,
    /// canonical), which makes its pinned host keys believable; `proof` is
    /// [`crate::OperatorKey::prove_membership`] of the blob.
    async fn sign_membership(blob: Vec<u8>, proof: Vec<u8>) -> Result<Vec<u8>, Refusal>;
    /// The agent's public key, OpenSSH text form.
    async fn public_key() -> String;
    // New calls go last: a call's place is its number on the wire.
    /// The agent's sshsig (PEM, namespace [`crate::CONTROL_NAMESPACE`]) of control state's
    /// signed bytes ([`crate::control_signing_bytes`]: a livetag, an application's desired
    /// state); `proof` is [`crate::OperatorKey::prove_control`] of the bytes.
    async fn sign_control(bytes: Vec<u8>, proof: Vec<u8>) -> Result<Vec<u8>, Refusal>;
}

/// Performs a [`PeerCall`] over a real tarpc client: the daemon's side of the core's
/// language (the simulator delivers calls in virtual time instead).
pub trait InvokePeerCall {
    /// Send the call to `client`'s peer and wrap its answer as the matching [`PeerReply`].
    /// Errors: the tarpc client's (deadline, disconnection).
    fn invoke(
        self,
        client: &PeerServiceClient,
        ctx: tarpc::context::Context,
    ) -> impl Future<Output = Result<PeerReply, tarpc::client::RpcError>> + Send;
}

impl InvokePeerCall for PeerCall {
    async fn invoke(
        self,
        client: &PeerServiceClient,
        ctx: tarpc::context::Context,
    ) -> Result<PeerReply, tarpc::client::RpcError> {
        Ok(match self {
            PeerCall::Ping(p) => PeerReply::Pong(client.ping(ctx, p).await?),
            PeerCall::ExchangeLivetag(t) => {
                PeerReply::Livetag(client.exchange_livetag(ctx, t).await?)
            }
            PeerCall::ExchangeMember(v) => PeerReply::Member(client.exchange_member(ctx, v).await?),
            PeerCall::ExchangeApp(a) => PeerReply::App(client.exchange_app(ctx, a).await?),
            PeerCall::RetrievePeer(r) => PeerReply::Chunk(client.retrieve_peer(ctx, r).await?),
        })
    }
}

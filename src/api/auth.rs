//! etcd's `Auth` service: turning auth on and off, authenticating, and
//! administering users, roles and permissions.
//!
//! Changes go through Raft as commands (passwords hashed here first, so the
//! log never holds one in clear); everything but AuthStatus, Authenticate
//! and the first AuthEnable is root-only while auth is on. Reads wait for a
//! linearizable read index, so a user just added can authenticate anywhere.

use std::sync::Arc;

use rand::RngCore;
use tonic::{Request, Response, Status};
use tracing::instrument;

use super::context::{ApiContext, Caller};
use super::tokens::{hash_password, password_matches};
use super::ApiError;
use crate::proto::etcdserverpb::auth_server::Auth;
use crate::proto::etcdserverpb::*;
use crate::proto::raft::v1::command::Request as Cmd;
use crate::proto::raft::v1::command_result::Response as Applied;
use crate::proto::raft::v1::AuthEnable;
use crate::raft::state_store::read_state;
use crate::state::{AuthError, StateError};

/// The Auth service of one node.
pub struct AuthService {
    ctx: Arc<ApiContext>,
}

impl AuthService {
    /// The service over a node's context.
    pub fn new(ctx: Arc<ApiContext>) -> Self {
        Self { ctx }
    }

    /// Proposes an auth change by `caller` and answers with its header.
    async fn change(&self, caller: &Caller, command: Cmd) -> Result<ResponseHeader, ApiError> {
        let applied = self.ctx.propose(caller, command).await?;
        match applied.response {
            Some(Applied::Auth(_)) => Ok(self.ctx.header(applied.revision)),
            other => Err(ApiError::UnexpectedResult(format!("{other:?}"))),
        }
    }

    /// A root-only change.
    async fn admin_change<T>(&self, req: &Request<T>, command: Cmd) -> Result<ResponseHeader, ApiError> {
        let caller = self.ctx.admin(req).await?;
        self.change(&caller, command).await
    }

    /// A root-only change call: `command` makes the change of the request,
    /// `answer` the response around the header.
    async fn admin_rpc<Q, R>(
        &self,
        method: &'static str,
        req: Request<Q>,
        command: fn(Q) -> Cmd,
        answer: fn(Option<ResponseHeader>) -> R,
    ) -> Result<Response<R>, Status>
    where
        Q: Clone + Send + Sync + 'static,
    {
        self.ctx
            .observe(method, async move {
                let header = self.admin_change(&req, command(req.get_ref().clone())).await?;
                Ok(Response::new(answer(Some(header))))
            })
            .await
    }

    /// Waits until this member has applied what the leader committed, then
    /// checks that the caller is root: for the read-only admin calls.
    async fn admin_read<T>(&self, req: &Request<T>) -> Result<ResponseHeader, ApiError> {
        self.ctx.admin(req).await?;
        let revision = self.ctx.read_caught_up(|state| state.revision()).await?;
        Ok(self.ctx.header(revision))
    }
}

fn refused(e: AuthError) -> ApiError {
    ApiError::State(StateError::Auth(e))
}

/// A password as the log carries it: hashed. A client that sends a hash of
/// its own (etcd 3.5's `hashedPassword`, bcrypt) is refused: we could never
/// check a password against it.
fn hashed(password: &str, client_hash: &str) -> Result<String, Status> {
    if !client_hash.is_empty() {
        return Err(Status::invalid_argument(
            "etcdserver: hashed passwords are not accepted; send the password over TLS",
        ));
    }
    Ok(hash_password(password))
}

#[tonic::async_trait]
impl Auth for AuthService {
    #[instrument(skip_all)]
    async fn auth_enable(&self, req: Request<AuthEnableRequest>) -> Result<Response<AuthEnableResponse>, Status> {
        self.ctx
            .observe("Auth/AuthEnable", async move {
                // Anyone may turn auth on (there are no users to check until
                // then); once on, only root (when it is a no-op).
                let caller = self.ctx.admin(&req).await?;
                let mut token_key = vec![0u8; 32];
                crate::runtime::rng().fill_bytes(&mut token_key);
                let header = self.change(&caller, Cmd::AuthEnable(AuthEnable { token_key })).await?;
                Ok(Response::new(AuthEnableResponse { header: Some(header) }))
            })
            .await
    }

    #[instrument(skip_all)]
    async fn auth_disable(&self, req: Request<AuthDisableRequest>) -> Result<Response<AuthDisableResponse>, Status> {
        self.admin_rpc("Auth/AuthDisable", req, Cmd::AuthDisable, |header| AuthDisableResponse { header }).await
    }

    #[instrument(skip_all)]
    async fn auth_status(&self, _req: Request<AuthStatusRequest>) -> Result<Response<AuthStatusResponse>, Status> {
        self.ctx
            .observe("Auth/AuthStatus", async move {
                self.ctx.node.read_barrier().await.map_err(ApiError::from)?;
                let state = read_state(self.ctx.node.state());
                Ok(Response::new(AuthStatusResponse {
                    header: Some(self.ctx.header(state.revision())),
                    enabled: state.auth().enabled(),
                    auth_revision: state.auth().revision(),
                }))
            })
            .await
    }

    #[instrument(skip_all, fields(user = %req.get_ref().name))]
    async fn authenticate(&self, req: Request<AuthenticateRequest>) -> Result<Response<AuthenticateResponse>, Status> {
        self.ctx
            .observe("Auth/Authenticate", async move {
                let from = req.remote_addr();
                let req = req.into_inner();
                self.ctx.check_size(&req)?;
                self.ctx.node.read_barrier().await.map_err(ApiError::from)?;
                let (hash, revision) = {
                    let state = read_state(self.ctx.node.state());
                    let auth = state.auth();
                    if !auth.enabled() {
                        return Err(refused(AuthError::AuthNotEnabled).into());
                    }
                    let user = auth.user(&req.name).filter(|u| !u.no_password);
                    (user.map(|u| u.password_hash.clone()), state.revision())
                };
                // The slow hash runs without the state lock; a missing user
                // is refused with the same error as a wrong password.
                let matches = hash.is_some_and(|hash| password_matches(&req.password, &hash));
                if !matches {
                    tracing::info!(user = %req.name, from = ?from, "authentication failed");
                    return Err(refused(AuthError::AuthFailed).into());
                }
                let token = self.ctx.tokens.issue(read_state(self.ctx.node.state()).auth(), &req.name);
                Ok(Response::new(AuthenticateResponse { header: Some(self.ctx.header(revision)), token }))
            })
            .await
    }

    #[instrument(skip_all, fields(user = %req.get_ref().name))]
    async fn user_add(&self, req: Request<AuthUserAddRequest>) -> Result<Response<AuthUserAddResponse>, Status> {
        self.ctx
            .observe("Auth/UserAdd", async move {
                let caller = self.ctx.admin(&req).await?;
                let mut add = req.into_inner();
                self.ctx.check_size(&add)?;
                let no_password = add.options.as_ref().is_some_and(|o| o.no_password);
                add.hashed_password =
                    if no_password { String::new() } else { hashed(&add.password, &add.hashed_password)? };
                add.password.clear();
                let header = self.change(&caller, Cmd::UserAdd(add)).await?;
                Ok(Response::new(AuthUserAddResponse { header: Some(header) }))
            })
            .await
    }

    #[instrument(skip_all)]
    async fn user_get(&self, req: Request<AuthUserGetRequest>) -> Result<Response<AuthUserGetResponse>, Status> {
        self.ctx
            .observe("Auth/UserGet", async move {
                let header = self.admin_read(&req).await?;
                let state = read_state(self.ctx.node.state());
                let user = state.auth().user(&req.get_ref().name).ok_or(refused(AuthError::UserNotFound))?;
                let roles = user.roles.iter().cloned().collect();
                Ok(Response::new(AuthUserGetResponse { header: Some(header), roles }))
            })
            .await
    }

    #[instrument(skip_all)]
    async fn user_list(&self, req: Request<AuthUserListRequest>) -> Result<Response<AuthUserListResponse>, Status> {
        self.ctx
            .observe("Auth/UserList", async move {
                let header = self.admin_read(&req).await?;
                let users = read_state(self.ctx.node.state()).auth().user_names();
                Ok(Response::new(AuthUserListResponse { header: Some(header), users }))
            })
            .await
    }

    #[instrument(skip_all)]
    async fn user_delete(
        &self,
        req: Request<AuthUserDeleteRequest>,
    ) -> Result<Response<AuthUserDeleteResponse>, Status> {
        self.admin_rpc("Auth/UserDelete", req, Cmd::UserDelete, |header| AuthUserDeleteResponse { header }).await
    }

    #[instrument(skip_all)]
    async fn user_change_password(
        &self,
        req: Request<AuthUserChangePasswordRequest>,
    ) -> Result<Response<AuthUserChangePasswordResponse>, Status> {
        self.ctx
            .observe("Auth/UserChangePassword", async move {
                let caller = self.ctx.admin(&req).await?;
                let mut change = req.into_inner();
                self.ctx.check_size(&change)?;
                change.hashed_password = hashed(&change.password, &change.hashed_password)?;
                change.password.clear();
                let header = self.change(&caller, Cmd::UserChangePassword(change)).await?;
                Ok(Response::new(AuthUserChangePasswordResponse { header: Some(header) }))
            })
            .await
    }

    #[instrument(skip_all)]
    async fn user_grant_role(
        &self,
        req: Request<AuthUserGrantRoleRequest>,
    ) -> Result<Response<AuthUserGrantRoleResponse>, Status> {
        self.admin_rpc("Auth/UserGrantRole", req, Cmd::UserGrantRole, |header| AuthUserGrantRoleResponse { header })
            .await
    }

    #[instrument(skip_all)]
    async fn user_revoke_role(
        &self,
        req: Request<AuthUserRevokeRoleRequest>,
    ) -> Result<Response<AuthUserRevokeRoleResponse>, Status> {
        self.admin_rpc("Auth/UserRevokeRole", req, Cmd::UserRevokeRole, |header| AuthUserRevokeRoleResponse { header })
            .await
    }

    #[instrument(skip_all)]
    async fn role_add(&self, req: Request<AuthRoleAddRequest>) -> Result<Response<AuthRoleAddResponse>, Status> {
        self.admin_rpc("Auth/RoleAdd", req, Cmd::RoleAdd, |header| AuthRoleAddResponse { header }).await
    }

    #[instrument(skip_all)]
    async fn role_get(&self, req: Request<AuthRoleGetRequest>) -> Result<Response<AuthRoleGetResponse>, Status> {
        self.ctx
            .observe("Auth/RoleGet", async move {
                let header = self.admin_read(&req).await?;
                let perm = read_state(self.ctx.node.state()).auth().role(&req.get_ref().role).map_err(refused)?;
                Ok(Response::new(AuthRoleGetResponse { header: Some(header), perm }))
            })
            .await
    }

    #[instrument(skip_all)]
    async fn role_list(&self, req: Request<AuthRoleListRequest>) -> Result<Response<AuthRoleListResponse>, Status> {
        self.ctx
            .observe("Auth/RoleList", async move {
                let header = self.admin_read(&req).await?;
                let roles = read_state(self.ctx.node.state()).auth().role_names();
                Ok(Response::new(AuthRoleListResponse { header: Some(header), roles }))
            })
            .await
    }

    #[instrument(skip_all)]
    async fn role_delete(
        &self,
        req: Request<AuthRoleDeleteRequest>,
    ) -> Result<Response<AuthRoleDeleteResponse>, Status> {
        self.admin_rpc("Auth/RoleDelete", req, Cmd::RoleDelete, |header| AuthRoleDeleteResponse { header }).await
    }

    #[instrument(skip_all)]
    async fn role_grant_permission(
        &self,
        req: Request<AuthRoleGrantPermissionRequest>,
    ) -> Result<Response<AuthRoleGrantPermissionResponse>, Status> {
        self.admin_rpc("Auth/RoleGrantPermission", req, Cmd::RoleGrantPermission, |header| {
            AuthRoleGrantPermissionResponse { header }
        })
        .await
    }

    #[instrument(skip_all)]
    async fn role_revoke_permission(
        &self,
        req: Request<AuthRoleRevokePermissionRequest>,
    ) -> Result<Response<AuthRoleRevokePermissionResponse>, Status> {
        self.admin_rpc("Auth/RoleRevokePermission", req, Cmd::RoleRevokePermission, |header| {
            AuthRoleRevokePermissionResponse { header }
        })
        .await
    }
}

//! Entra ID client-credentials flow (graph-facts §10): the token endpoint at
//! `/{tenant}/oauth2/v2.0/token`, which issues tokens to every app registration of the
//! tenant, and the bearer check in front of `/v1.0`, which resolves the calling app
//! ([`Caller`] in the request's extensions) and checks the route's permission ([`apps`]).
//! Token errors use the AAD shape (`error`, `error_description` with an
//! AADSTS code), Graph errors the Graph shape (`InvalidAuthenticationToken`).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::Utc;
use serde_json::json;

use crate::Inner;
use crate::apps::{self, Caller};
use crate::error::GraphError;
use crate::signer::nonce;

pub fn token_router() -> Router<Arc<Inner>> {
    Router::new().route("/{tenant}/oauth2/v2.0/token", post(issue_token))
}

fn aad_error(status: StatusCode, error: &str, code: u32, description: &str) -> Response {
    let body = json!({
        "error": error,
        "error_description": format!("AADSTS{code}: {description}"),
        "error_codes": [code],
        "timestamp": Utc::now().format("%Y-%m-%d %H:%M:%SZ").to_string(),
        "trace_id": uuid::Uuid::new_v4().to_string(),
        "correlation_id": uuid::Uuid::new_v4().to_string(),
    });
    (status, axum::Json(body)).into_response()
}

async fn issue_token(State(sim): State<Arc<Inner>>, Path(tenant): Path<String>, body: Bytes) -> Response {
    let form: std::collections::HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    let cfg = &sim.cfg;
    if field("grant_type") != "client_credentials" {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type.",
        );
    }
    if field("scope") != "https://graph.microsoft.com/.default" {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            1002012,
            "The provided value for scope is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier.",
        );
    }
    if tenant != cfg.tenant_id {
        return aad_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            90002,
            "Tenant not found. Check to make sure you have the correct tenant ID.",
        );
    }
    let app = sim.lock().apps.iter().find(|a| a.client_id == field("client_id")).cloned();
    let Some(app) = app else {
        return aad_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            700016,
            "Application was not found in the directory.",
        );
    };
    if field("client_secret") != app.client_secret {
        return aad_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000215,
            "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value.",
        );
    }
    let lifetime = cfg.token_lifetime.as_secs();
    let exp = Utc::now().timestamp() + lifetime as i64;
    let generation = sim.lock().token_generation;
    // The token carries the app's permissions as of now, as Entra's `roles` claim does.
    let roles = app.permissions.join(",");
    let token =
        sim.signer.sign(&["at", &tenant, &app.client_id, &exp.to_string(), &generation.to_string(), &nonce(), &roles]);
    axum::Json(json!({
        "token_type": "Bearer",
        "expires_in": lifetime,
        "ext_expires_in": lifetime,
        "access_token": token,
    }))
    .into_response()
}

/// Rejects `/v1.0` requests without a live bearer token from this simulator, or whose app
/// lacks the route's permission; puts the [`Caller`] in the request's extensions.
pub async fn require_bearer(State(sim): State<Arc<Inner>>, mut req: Request, next: Next) -> Response {
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
    let Some(token) = token else {
        return GraphError::unauthenticated("Access token is empty.").into_response();
    };
    let Some(fields) = sim.signer.verify(token.trim()) else {
        return GraphError::unauthenticated("IDX14100: JWT is not well formed.").into_response();
    };
    let exp = fields.get(3).and_then(|e| e.parse::<i64>().ok()).unwrap_or(0);
    let generation = fields.get(4).and_then(|g| g.parse::<u64>().ok());
    if fields.first().map(String::as_str) != Some("at") {
        return GraphError::unauthenticated("Invalid access token.").into_response();
    }
    if exp <= Utc::now().timestamp() || generation != Some(sim.lock().token_generation) {
        return GraphError::unauthenticated("Lifetime validation failed, the token is expired.").into_response();
    }
    let client_id = fields.get(2).cloned().unwrap_or_default();
    let roles = fields.get(6).map(|r| r.split(',').filter(|r| !r.is_empty()).map(str::to_string).collect());
    let Some(roles) = roles else {
        return GraphError::unauthenticated("Invalid access token.").into_response();
    };
    let caller = Caller { client_id, roles };
    if let Err(e) = apps::check(&caller, req.method(), req.uri().path().trim_start_matches("/v1.0")) {
        return e.into_response();
    }
    req.extensions_mut().insert(caller);
    next.run(req).await
}

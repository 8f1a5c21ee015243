//! Change-notification subscriptions: create, list, renew, reauthorize, delete.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::Method;
use reqwest::header::{HeaderName, HeaderValue};
use serde::Deserialize;
use serde_json::json;

use super::client::{Call, GraphClient, read_json, read_nothing};
use super::error::GraphError;

/// What to subscribe to. For drives, `resource` is `/drives/{id}/root` and
/// `change_type` must be `updated`.
#[derive(Clone, PartialEq, Eq)]
pub struct NewSubscription {
    pub resource: String,
    pub change_type: String,
    pub notification_url: String,
    /// Only settable at creation: changing it means delete and recreate.
    pub lifecycle_notification_url: Option<String>,
    pub expiration: DateTime<Utc>,
    /// Echoed in every notification to prove it genuine: a secret, never printed.
    pub client_state: String,
    /// `Prefer: includesecuritywebhooks` (drives): sharing and permission changes notify too;
    /// without it an external share produces no notification (graph-facts-sharepoint §2.1).
    pub security_webhooks: bool,
}

impl fmt::Debug for NewSubscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewSubscription")
            .field("resource", &self.resource)
            .field("change_type", &self.change_type)
            .field("notification_url", &self.notification_url)
            .field("lifecycle_notification_url", &self.lifecycle_notification_url)
            .field("expiration", &self.expiration)
            .field("client_state", &"<redacted>")
            .finish()
    }
}

/// A subscription as Graph reports it. Never its `clientState`: Graph does not return it on
/// a list "for security purposes" (`subscription-list.md`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Subscription {
    pub id: String,
    pub resource: String,
    #[serde(rename = "expirationDateTime")]
    pub expiration: DateTime<Utc>,
    #[serde(rename = "notificationUrl", default)]
    pub notification_url: Option<String>,
}

#[derive(Deserialize)]
struct SubscriptionsPage {
    #[serde(default)]
    value: Vec<Subscription>,
    #[serde(rename = "@odata.nextLink")]
    next_link: Option<String>,
}

impl GraphClient {
    /// Graph validates the notification URL(s) before answering. Not retried on transient
    /// failures (a resend could create a second subscription): the caller decides.
    pub async fn create_subscription(&self, req: &NewSubscription) -> Result<Subscription, GraphError> {
        let mut body = json!({
            "changeType": req.change_type,
            "notificationUrl": req.notification_url,
            "resource": req.resource,
            "expirationDateTime": timestamp(req.expiration),
            "clientState": req.client_state,
        });
        if let (Some(url), Some(obj)) = (&req.lifecycle_notification_url, body.as_object_mut()) {
            obj.insert("lifecycleNotificationUrl".into(), url.clone().into());
        }
        let mut call = Call::with_json(Method::POST, self.endpoint(&["subscriptions"]), &body);
        call.idempotent = false;
        if req.security_webhooks {
            call.headers.insert(HeaderName::from_static("prefer"), HeaderValue::from_static("includesecuritywebhooks"));
        }
        self.execute(&call, read_json).await
    }

    /// Every live subscription this app created (app-only, Graph lists the calling app's
    /// only: `subscription-list.md`), all pages followed. Graph drops a subscription that
    /// expires, and sometimes one that has not: what is missing here is gone.
    pub async fn list_subscriptions(&self) -> Result<Vec<Subscription>, GraphError> {
        let mut url = self.endpoint(&["subscriptions"]);
        let mut all = Vec::new();
        loop {
            let page: SubscriptionsPage = self.get_json(url).await?;
            all.extend(page.value);
            match page.next_link {
                Some(next) => url = self.graph_link(&next)?,
                None => return Ok(all),
            }
        }
    }

    /// Moves the expiry (which also reauthorizes the subscription).
    pub async fn renew_subscription(&self, id: &str, expires: DateTime<Utc>) -> Result<Subscription, GraphError> {
        let body = json!({ "expirationDateTime": timestamp(expires) });
        let url = self.endpoint(&["subscriptions", id]);
        self.execute(&Call::with_json(Method::PATCH, url, &body), read_json).await
    }

    /// Answers a `reauthorizationRequired` lifecycle event without moving the expiry.
    pub async fn reauthorize_subscription(&self, id: &str) -> Result<(), GraphError> {
        let body = json!({});
        let url = self.endpoint(&["subscriptions", id, "reauthorize"]);
        self.execute(&Call::with_json(Method::POST, url, &body), read_nothing).await
    }

    /// Deleting a subscription that is already gone succeeds.
    pub async fn delete_subscription(&self, id: &str) -> Result<(), GraphError> {
        let mut call = Call::get(self.endpoint(&["subscriptions", id]));
        call.method = Method::DELETE;
        match self.execute(&call, read_nothing).await {
            Err(GraphError::NotFound) => Ok(()),
            other => other,
        }
    }
}

fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_state_never_prints() {
        let req = NewSubscription {
            resource: "/drives/d/root".into(),
            change_type: "updated".into(),
            notification_url: "https://hook.example/n".into(),
            lifecycle_notification_url: None,
            expiration: DateTime::<Utc>::MIN_UTC,
            client_state: "s3cret-state".into(),
            security_webhooks: true,
        };
        assert!(!format!("{req:?}").contains("s3cret"));
    }
}

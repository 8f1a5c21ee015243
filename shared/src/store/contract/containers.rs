//! [`Containers`]: the registry of protected containers, per tenant, and the drives and
//! mailboxes discovery could not resolve.

use super::at;
use crate::model::{
    ContainerId, ContainerRecord, LibraryRef, Problem, SCHEMA_VERSION, Service, SiteRecord, Unresolved,
};
use crate::store::Containers;

contract_tests!(
    containers_are_listed_per_tenant_and_found_by_tag,
    unresolved_lookups_are_listed_until_cleared,
    sites_and_the_sites_delta_are_kept_per_tenant
);

fn record(container: ContainerId) -> ContainerRecord {
    ContainerRecord {
        container,
        user_id: "u".into(),
        user_principal_name: None,
        discovered_at: at("2024-05-01T00:00:00Z"),
        subscription_id: None,
        subscription_expires: None,
        problem: None,
        site: None,
    }
}

async fn containers_are_listed_per_tenant_and_found_by_tag(catalog: &impl Containers) {
    // Given two drives and a mailbox of tenant-1 registered
    for drive in ["d1", "d2"] {
        catalog.put_container(&record(ContainerId::new("tenant-1", drive))).await.expect("put container");
    }
    let mailbox = ContainerId::mailbox("tenant-1", "u");
    let mut refused = record(mailbox.clone());
    refused.problem = Some(Problem { reason: "HTTP 403 ExtensionError".into(), since: at("2024-05-02T00:00:00Z") });
    catalog.put_container(&refused).await.expect("put mailbox");

    // Then tenant-1 lists all three, each reads back, and another tenant lists none
    let listed = catalog.list_containers("tenant-1").await.expect("list");
    assert_eq!(
        listed.iter().map(|r| r.container.scoped_id().into_owned()).collect::<Vec<_>>(),
        ["d1", "d2", "mailbox:u"]
    );
    assert!(catalog.container(&ContainerId::new("tenant-1", "d1")).await.expect("get").is_some());
    assert!(catalog.container(&ContainerId::new("tenant-1", "d3")).await.expect("get").is_none());
    assert!(catalog.list_containers("tenant-2").await.expect("list").is_empty());

    // And a container registered by someone else meanwhile is not registered again
    let mut second = record(ContainerId::new("tenant-1", "d1"));
    second.subscription_id = Some("a second subscription".into());
    assert!(!catalog.create_container(&second).await.expect("create"), "d1 is registered");
    let d1 = catalog.container(&ContainerId::new("tenant-1", "d1")).await.expect("get").expect("d1");
    assert_eq!(d1.subscription_id, None, "the first registration stands");
    assert!(catalog.create_container(&record(ContainerId::new("tenant-1", "d3"))).await.expect("create"));
    assert!(
        catalog.container_by_tag("tenant-1", &ContainerId::new("tenant-1", "d3").tag()).await.expect("tag").is_some()
    );

    // And a lifecycle event's tag finds its container (problem included), in its tenant only
    let found = catalog.container_by_tag("tenant-1", &mailbox.tag()).await.expect("by tag");
    assert_eq!(found, Some(refused));
    assert!(catalog.container_by_tag("tenant-2", &mailbox.tag()).await.expect("by tag").is_none());
    assert!(catalog.container_by_tag("tenant-1", "no-such-tag").await.expect("by tag").is_none());
}

async fn unresolved_lookups_are_listed_until_cleared(catalog: &impl Containers) {
    // Given u1's drive and mailbox and u2's drive unresolved
    let unresolved = |user: &str, service| Unresolved {
        tenant_id: "tenant-1".into(),
        user_id: user.into(),
        user_principal_name: Some(format!("{user}@contoso.test")),
        service,
        problem: Problem { reason: "HTTP 403 accessDenied".into(), since: at("2024-05-01T00:00:00Z") },
    };
    for (user, service) in [("u1", Service::Drive), ("u1", Service::Mailbox), ("u2", Service::Drive)] {
        catalog.put_unresolved(&unresolved(user, service)).await.expect("put");
    }

    // When u1's drive is resolved (and something never unresolved is cleared)
    catalog.clear_unresolved("tenant-1", "u1", Service::Drive).await.expect("clear");
    catalog.clear_unresolved("tenant-1", "u9", Service::Mailbox).await.expect("clear unknown");

    // Then the other two are listed, in their tenant only
    let mut listed = catalog.list_unresolved("tenant-1").await.expect("list");
    listed.sort_by(|a, b| (&a.user_id, a.service).cmp(&(&b.user_id, b.service)));
    assert_eq!(listed, [unresolved("u1", Service::Mailbox), unresolved("u2", Service::Drive)]);
    assert!(catalog.list_unresolved("tenant-2").await.expect("list").is_empty());

    // And an unresolved lookup that fails again is listed again
    catalog.put_unresolved(&unresolved("u1", Service::Drive)).await.expect("put again");
    assert_eq!(catalog.list_unresolved("tenant-1").await.expect("list").len(), 3);
}

async fn sites_and_the_sites_delta_are_kept_per_tenant(catalog: &impl Containers) {
    // Given a site with a protected and an excluded library, and a subsite Graph refused
    let site = |id: &str, parent: Option<&str>| SiteRecord {
        v: SCHEMA_VERSION,
        tenant_id: "tenant-1".into(),
        site_id: id.into(),
        name: format!("site {id}"),
        web_url: Some(format!("https://contoso.sharepoint.com/sites/{id}")),
        parent_id: parent.map(str::to_owned),
        discovered_at: at("2024-05-01T00:00:00Z"),
        libraries: Vec::new(),
        archive_status: None,
        deleted_at: None,
        problem: None,
    };
    let mut team = site("contoso.sharepoint.com,a-1,b-1", None);
    team.libraries = vec![
        LibraryRef { drive_id: "b!docs".into(), name: "Documents".into(), system: false, excluded: None },
        LibraryRef {
            drive_id: "b!style".into(),
            name: "Style Library".into(),
            system: true,
            excluded: Some("hidden system library".into()),
        },
    ];
    let mut sub = site("contoso.sharepoint.com,a-1,b-2", Some("contoso.sharepoint.com,a-1,b-1"));
    sub.problem = Some(Problem { reason: "forbidden (accessDenied)".into(), since: at("2024-05-02T00:00:00Z") });
    for s in [&team, &sub] {
        catalog.put_site(s).await.expect("put site");
    }
    catalog.put_sites_delta("tenant-1", "https://graph.test/v1.0/sites/delta?token=t1").await.expect("put delta");

    // Then both read back and are listed in their tenant only
    assert_eq!(catalog.site("tenant-1", &team.site_id).await.expect("get"), Some(team.clone()));
    let mut listed = catalog.list_sites("tenant-1").await.expect("list");
    listed.sort_by(|a, b| a.site_id.cmp(&b.site_id));
    assert_eq!(listed, [team.clone(), sub]);
    assert!(catalog.list_sites("tenant-2").await.expect("list").is_empty());
    assert!(catalog.site("tenant-2", &team.site_id).await.expect("get").is_none());

    // And a site marked deleted replaces its row; the delta link moves on, per tenant
    let deleted = SiteRecord { deleted_at: Some(at("2024-06-01T00:00:00Z")), ..team };
    catalog.put_site(&deleted).await.expect("put deleted");
    assert_eq!(catalog.site("tenant-1", &deleted.site_id).await.expect("get"), Some(deleted));
    catalog.put_sites_delta("tenant-1", "https://graph.test/v1.0/sites/delta?token=t2").await.expect("move");
    assert_eq!(
        catalog.sites_delta("tenant-1").await.expect("delta").as_deref(),
        Some("https://graph.test/v1.0/sites/delta?token=t2")
    );
    assert!(catalog.sites_delta("tenant-2").await.expect("delta").is_none());
}

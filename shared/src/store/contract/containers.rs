//! [`Containers`]: the registry of protected containers, per tenant.

use super::at;
use crate::model::{ContainerId, ContainerRecord};
use crate::store::Containers;

contract_tests!(containers_are_listed_per_tenant);

async fn containers_are_listed_per_tenant(catalog: &impl Containers) {
    // Given two drives of tenant-1 registered
    for drive in ["d1", "d2"] {
        let record = ContainerRecord {
            container: ContainerId::new("tenant-1", drive),
            user_id: "u".into(),
            user_principal_name: None,
            discovered_at: at("2024-05-01T00:00:00Z"),
            subscription_id: None,
            subscription_expires: None,
        };
        catalog.put_container(&record).await.expect("put container");
    }

    // Then tenant-1 lists both, each reads back, and another tenant lists none
    let listed = catalog.list_containers("tenant-1").await.expect("list");
    assert_eq!(listed.iter().map(|r| r.container.graph_id.as_str()).collect::<Vec<_>>(), ["d1", "d2"]);
    assert!(catalog.container(&ContainerId::new("tenant-1", "d1")).await.expect("get").is_some());
    assert!(catalog.container(&ContainerId::new("tenant-1", "d3")).await.expect("get").is_none());
    assert!(catalog.list_containers("tenant-2").await.expect("list").is_empty());
}

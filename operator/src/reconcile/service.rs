//! The Service in front of the server pods (port `http` 8000).

use glm_crds::{GlmDeployment, SERVER_PORT};
use k8s_openapi::{
    api::core::v1::{Service, ServicePort, ServiceSpec},
    apimachinery::pkg::util::intstr::IntOrString,
};
use kube::ResourceExt;

use super::meta::{child_meta, selector_labels};
use crate::Result;

/// The ClusterIP Service named like the GlmDeployment.
pub fn desired_service(glmd: &GlmDeployment) -> Result<Service> {
    let name = glmd.name_any();
    Ok(Service {
        metadata: child_meta(glmd, name.clone(), "server", true)?,
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(selector_labels(&name)),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: SERVER_PORT,
                target_port: Some(IntOrString::String("http".into())),
                protocol: Some("TCP".into()),
                app_protocol: Some("http".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    })
}

/// `current` with the operator's ports, selector, type, labels and owner references put
/// back (everything the API server allocated, like the cluster IP, is kept): what a replace
/// sends when server-side apply cannot merge a hand edit.
pub fn repaired(current: &Service, desired: &Service) -> Service {
    let mut out = current.clone();
    out.metadata.labels = desired.metadata.labels.clone();
    out.metadata.owner_references = desired.metadata.owner_references.clone();
    out.metadata.managed_fields = None;
    let want = desired.spec.clone().unwrap_or_default();
    let spec = out.spec.get_or_insert_with(ServiceSpec::default);
    spec.ports = want.ports;
    spec.selector = want.selector;
    spec.type_ = want.type_;
    out.status = None;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::glmd;

    #[test]
    fn service_selects_server_pods_on_http() {
        let svc = desired_service(&glmd()).unwrap();
        assert_eq!(svc.metadata.name.as_deref(), Some("glm45"));
        let spec = svc.spec.unwrap();
        assert_eq!(spec.selector.unwrap(), selector_labels("glm45"));
        let port = &spec.ports.unwrap()[0];
        assert_eq!((port.name.as_deref(), port.port), (Some("http"), 8000));
    }

    #[test]
    fn repair_puts_the_whole_port_list_back_and_keeps_the_cluster_ip() {
        let desired = desired_service(&glmd()).unwrap();
        // `kubectl patch svc glm45 --type=json -p '[{"op":"replace","path":"/spec/ports/0/port","value":9000}]'`
        // plus a second port someone added by hand.
        let mut edited = desired.clone();
        let spec = edited.spec.as_mut().unwrap();
        spec.cluster_ip = Some("10.96.0.42".into());
        let ports = spec.ports.as_mut().unwrap();
        ports[0].port = 9000;
        ports.push(ServicePort {
            name: Some("debug".into()),
            port: 9999,
            ..ServicePort::default()
        });
        edited.metadata.resource_version = Some("77".into());

        let fixed = repaired(&edited, &desired);
        let spec = fixed.spec.unwrap();
        assert_eq!(spec.ports, desired.spec.as_ref().unwrap().ports);
        assert_eq!(spec.cluster_ip.as_deref(), Some("10.96.0.42"));
        assert_eq!(fixed.metadata.resource_version.as_deref(), Some("77"));
        assert_eq!(
            fixed.metadata.owner_references,
            desired.metadata.owner_references
        );
    }
}

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
}

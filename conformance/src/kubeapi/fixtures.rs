//! Objects in the shape a kubeadm cluster's API server returns them (field names and nesting
//! per the Kubernetes API reference for `v1/Node` and `v1/Pod`), including the bulky parts
//! flannel must not choke on: managed fields, status images, node info.

use std::net::Ipv4Addr;

use serde_json::{json, Value};

/// A Ready worker Node whose kubelet reports `internal_ip`; `pod_cidr` unset models a
/// cluster whose controller manager allocates no CIDRs.
pub fn node(name: &str, pod_cidr: Option<&str>, internal_ip: Ipv4Addr) -> Value {
    let mut spec = json!({});
    if let Some(cidr) = pod_cidr {
        spec = json!({"podCIDR": cidr, "podCIDRs": [cidr]});
    }
    json!({
        "kind": "Node",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "labels": {
                "beta.kubernetes.io/arch": "amd64",
                "beta.kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux"
            },
            "annotations": {
                "kubeadm.alpha.kubernetes.io/cri-socket": "unix:///var/run/containerd/containerd.sock",
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true"
            },
            "managedFields": [
                {
                    "manager": "kubelet",
                    "operation": "Update",
                    "apiVersion": "v1",
                    "time": "2026-01-01T00:00:00Z",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:kubernetes.io/hostname": {}}}}
                },
                {
                    "manager": "kube-controller-manager",
                    "operation": "Update",
                    "apiVersion": "v1",
                    "time": "2026-01-01T00:00:05Z",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:spec": {"f:podCIDR": {}, "f:podCIDRs": {".": {}}}}
                }
            ]
        },
        "spec": spec,
        "status": {
            "capacity": {"cpu": "2", "ephemeral-storage": "30787492Ki", "hugepages-2Mi": "0", "memory": "4015124Ki", "pods": "110"},
            "allocatable": {"cpu": "2", "ephemeral-storage": "28373752581", "hugepages-2Mi": "0", "memory": "3912724Ki", "pods": "110"},
            "conditions": [
                {"type": "MemoryPressure", "status": "False", "lastHeartbeatTime": "2026-01-01T00:10:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z", "reason": "KubeletHasSufficientMemory", "message": "kubelet has sufficient memory available"},
                {"type": "DiskPressure", "status": "False", "lastHeartbeatTime": "2026-01-01T00:10:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z", "reason": "KubeletHasNoDiskPressure", "message": "kubelet has no disk pressure"},
                {"type": "PIDPressure", "status": "False", "lastHeartbeatTime": "2026-01-01T00:10:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z", "reason": "KubeletHasSufficientPID", "message": "kubelet has sufficient PID available"},
                {"type": "Ready", "status": "False", "lastHeartbeatTime": "2026-01-01T00:10:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z", "reason": "KubeletNotReady", "message": "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized"}
            ],
            "addresses": [
                {"type": "InternalIP", "address": internal_ip.to_string()},
                {"type": "Hostname", "address": name}
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": "3c1f7b2a9d8e4f60a1b2c3d4e5f60718",
                "systemUUID": "9d0e6f1a-2b3c-4d5e-8f90-a1b2c3d4e5f6",
                "bootID": "5e4d3c2b-1a09-4f8e-9d7c-6b5a49382716",
                "kernelVersion": "6.1.0-18-amd64",
                "osImage": "Debian GNU/Linux 12 (bookworm)",
                "containerRuntimeVersion": "containerd://1.7.13",
                "kubeletVersion": "v1.33.1",
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": "amd64"
            },
            "images": [
                {"names": ["registry.k8s.io/etcd@sha256:0c1f4a3e5b7d9f2a4c6e8b0d2f4a6c8e0b2d4f6a8c0e2b4d6f8a0c2e4b6d8f0a", "registry.k8s.io/etcd:3.5.21-0"], "sizeBytes": 58938593},
                {"names": ["registry.k8s.io/kube-apiserver@sha256:1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e", "registry.k8s.io/kube-apiserver:v1.33.1"], "sizeBytes": 30071307},
                {"names": ["registry.k8s.io/kube-proxy@sha256:2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f", "registry.k8s.io/kube-proxy:v1.33.1"], "sizeBytes": 30894189},
                {"names": ["registry.k8s.io/coredns/coredns@sha256:3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a", "registry.k8s.io/coredns/coredns:v1.12.0"], "sizeBytes": 20939036},
                {"names": ["registry.k8s.io/pause@sha256:4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b", "registry.k8s.io/pause:3.10"], "sizeBytes": 320368}
            ]
        }
    })
}

/// A running Pod of the flannel DaemonSet, scheduled on `node_name`.
pub fn pod(namespace: &str, name: &str, node_name: &str) -> Value {
    json!({
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "generateName": "kube-flannel-ds-",
            "namespace": namespace,
            "uid": "7a6b5c4d-3e2f-4a1b-9c8d-7e6f5a4b3c2d",
            "creationTimestamp": "2026-01-01T00:00:10Z",
            "labels": {"app": "flannel", "k8s-app": "flannel", "tier": "node", "pod-template-generation": "1"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "kube-flannel-ds", "uid": "1b2c3d4e-5f6a-4b7c-8d9e-0f1a2b3c4d5e", "controller": true, "blockOwnerDeletion": true}]
        },
        "spec": {
            "nodeName": node_name,
            "hostNetwork": true,
            "serviceAccountName": "flannel",
            "priorityClassName": "system-node-critical",
            "containers": [{
                "name": "kube-flannel",
                "image": "ghcr.io/flannel-rs/flanneld:latest",
                "command": ["/opt/bin/flanneld"],
                "args": ["--ip-masq", "--kube-subnet-mgr"],
                "env": [
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}},
                    {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}}
                ],
                "resources": {"requests": {"cpu": "100m", "memory": "50Mi"}},
                "securityContext": {"privileged": false, "capabilities": {"add": ["NET_ADMIN", "NET_RAW"]}}
            }],
            "tolerations": [{"effect": "NoSchedule", "operator": "Exists"}]
        },
        "status": {
            "phase": "Running",
            "hostIP": "192.168.1.10",
            "podIP": "192.168.1.10",
            "startTime": "2026-01-01T00:00:10Z",
            "qosClass": "Burstable"
        }
    })
}

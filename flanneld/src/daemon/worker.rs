//! The backend's own OS thread. Backends use a synchronous netlink socket and may write
//! sysctls of the calling thread's namespace, so they never run on runtime threads; the async
//! side sends them closures and awaits the answers.

use std::sync::mpsc;
use std::thread;

use netconf::flannel::{BackendConfig, NetworkConfig};
use netops::netlink::Handle;
use tokio::sync::oneshot;

use crate::backend::{new_backend_with, Backend, BackendError, ExternalInterface, NodeOptions};

type Job = Box<dyn FnOnce(&mut dyn Backend) + Send>;

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("netlink socket for the backend: {0}")]
    Netlink(#[from] netops::netlink::NetlinkError),
    #[error("backend thread: {0}")]
    Thread(String),
}

/// A handle on the backend thread; the thread ends when the last handle is dropped.
#[derive(Clone)]
pub struct BackendWorker {
    jobs: mpsc::Sender<Job>,
    backend_type: &'static str,
}

impl BackendWorker {
    /// Starts the thread and builds the backend on it, with this node's own settings (the
    /// VTEP MACs kube mode stored, WireGuard's implementation and key file).
    pub fn start(
        cfg: BackendConfig,
        ext: ExternalInterface,
        network: NetworkConfig,
        node: NodeOptions,
    ) -> Result<BackendWorker, WorkerError> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::sync_channel::<Result<&'static str, WorkerError>>(1);
        thread::Builder::new()
            .name("backend".into())
            .spawn(move || {
                let built = Handle::new().map_err(WorkerError::from).and_then(|nl| {
                    new_backend_with(&cfg, &ext, &network, nl, node).map_err(WorkerError::from)
                });
                let mut backend = match built {
                    Ok(b) => {
                        let _ = ready_tx.send(Ok(b.backend_type()));
                        b
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                while let Ok(job) = queue.recv() {
                    job(backend.as_mut());
                }
            })
            .map_err(|e| WorkerError::Thread(e.to_string()))?;
        let backend_type = ready_rx
            .recv()
            .map_err(|_| WorkerError::Thread("exited during start".into()))??;
        Ok(BackendWorker { jobs, backend_type })
    }

    pub fn backend_type(&self) -> &'static str {
        self.backend_type
    }

    /// Runs `f` on the backend thread and returns its result.
    pub async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn Backend) -> R + Send + 'static,
    ) -> Result<R, WorkerError> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |b| {
            let _ = tx.send(f(b));
        });
        self.jobs
            .send(job)
            .map_err(|_| WorkerError::Thread("backend thread is gone".into()))?;
        rx.await
            .map_err(|_| WorkerError::Thread("backend thread panicked".into()))
    }
}

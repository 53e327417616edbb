//! Limits at the edge: a listener keeps at most so many connections open,
//! closing the ones past it at once (each costs a descriptor and HTTP/2
//! state), and takes new ones again as old ones close.

use std::time::Duration;

use placement_center::proto::grpc::health::v1::health_server::{Health, HealthServer};
use placement_center::proto::grpc::health::v1::{HealthCheckRequest, HealthCheckResponse};
use placement_center::runtime::{self, Listener};
use tokio::io::AsyncReadExt;
use tonic::{Request, Response, Status};

struct AlwaysServing;

#[tonic::async_trait]
impl Health for AlwaysServing {
    async fn check(&self, _: Request<HealthCheckRequest>) -> Result<Response<HealthCheckResponse>, Status> {
        Ok(Response::new(HealthCheckResponse { status: 1 }))
    }

    type WatchStream = futures::stream::Empty<Result<HealthCheckResponse, Status>>;

    async fn watch(&self, _: Request<HealthCheckRequest>) -> Result<Response<Self::WatchStream>, Status> {
        Err(Status::unimplemented("not here"))
    }
}

/// Whether the server closed `stream` within a second (a refused connection
/// is closed right after it is accepted; a kept one waits for the client's
/// HTTP/2 preface).
async fn closed(stream: &mut tokio::net::TcpStream) -> bool {
    let mut buf = [0u8; 64];
    loop {
        match tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {} // the server's settings frame
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_limit_are_closed_until_one_closes() {
    let listener = Listener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = tonic::transport::Server::builder().add_service(HealthServer::new(AlwaysServing));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = runtime::serve_limited(router, listener, None, 2, async move {
        let _ = stopped.await;
    });
    let client = async move {
        let connect = || tokio::net::TcpStream::connect(addr);
        let mut first = connect().await.unwrap();
        let mut second = connect().await.unwrap();
        let mut third = connect().await.unwrap();
        assert!(closed(&mut third).await, "a third connection was kept past a limit of 2");
        assert!(!closed(&mut first).await && !closed(&mut second).await, "a connection within the limit was closed");
        drop(first);
        // The server notices the close, then takes a new one.
        let mut kept = None;
        for _ in 0..20 {
            let mut again = connect().await.unwrap();
            if !closed(&mut again).await {
                kept = Some(again);
                break;
            }
        }
        assert!(kept.is_some(), "no connection was taken after one of two closed");
        // A graceful stop waits for open connections to close.
        drop((second, third, kept));
        stop.send(()).unwrap();
    };
    let (served, ()) = tokio::join!(server, client);
    served.unwrap();
}

//! TLS connections for WebSocket clients, trusting only a test CA.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// A TLS connector that trusts only the certificates in `ca_pem`.
pub fn tls_connector(ca_pem: &str) -> tokio_rustls::TlsConnector {
    tls_connector_alpn(ca_pem, &[])
}

/// [`tls_connector`] offering `alpn`.
pub fn tls_connector_alpn(ca_pem: &str, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// A TLS connection to `addr` for `server_name`, trusting only `ca_pem`.
pub async fn tls_connect(
    addr: SocketAddr,
    server_name: &str,
    ca_pem: &str,
) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from(server_name.to_string()).unwrap();
    tls_connector(ca_pem).connect(name, tcp).await.unwrap()
}

/// A TLS handshake to `addr` for `server_name`, or why it failed.
pub async fn try_tls_connect(
    addr: SocketAddr,
    server_name: &str,
    ca_pem: &str,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from(server_name.to_string()).unwrap();
    tls_connector(ca_pem).connect(name, tcp).await
}

/// An HTTP/2 connection over TLS to `addr` for `server_name`, trusting only `ca_pem`.
pub async fn h2_connect(
    addr: SocketAddr,
    server_name: &str,
    ca_pem: &str,
) -> h2::client::SendRequest<bytes::Bytes> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from(server_name.to_string()).unwrap();
    let tls = tls_connector_alpn(ca_pem, &[b"h2"])
        .connect(name, tcp)
        .await
        .unwrap();
    let (send, conn) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    send
}

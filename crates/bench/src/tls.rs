//! The AWS endpoint over HTTPS for the cold-start comparison: every real Lambda pays a TLS
//! handshake (and loads its root certificates) before its first AWS call, so both sides must.
//!
//! A certificate authority made for the run (openssl CLI, into `target/bench/tls`) signs a
//! `localhost` / `127.0.0.1` server certificate; a TLS front (tokio-rustls, already in the SDK's
//! dependency tree) terminates TLS and forwards the bytes to the router. Both sides trust the CA
//! through their standard settings, pointed at the same bundle (the system roots plus this CA, so
//! each side parses as many roots as it would in Lambda):
//!
//! - Rust: the SDK's HTTPS client loads roots with `rustls-native-certs`, which reads
//!   `SSL_CERT_FILE` instead of the platform store when it is set;
//! - Python: botocore's `AWS_CA_BUNDLE`.
//!
//! The front counts the handshakes it completes, so a cold start can be checked to have reached
//! AWS over TLS (a process that could not verify the certificate completes none).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, bail};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Where the system's root certificates are on Debian-like systems (and Lambda's images keep
/// theirs at /etc/pki/tls/certs/ca-bundle.crt); the first that exists goes into the bundle.
const SYSTEM_ROOTS: &[&str] = &["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"];

/// An HTTPS front for `upstream` (the router), alive until dropped.
#[derive(Debug)]
pub struct TlsFront {
    addr: SocketAddr,
    bundle: PathBuf,
    handshakes: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TlsFront {
    /// Makes the CA and server certificate in `dir` and starts serving.
    pub async fn start(dir: &Path, upstream: SocketAddr) -> anyhow::Result<Self> {
        let (certificate, key, bundle) = make_certificates(dir)?;
        let certificates = CertificateDer::pem_file_iter(&certificate)
            .context("reading the server certificate")?
            .collect::<Result<Vec<_>, _>>()
            .context("parsing the server certificate")?;
        let key = PrivateKeyDer::from_pem_file(&key).context("reading the server key")?;
        let config = ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certificates, key)
            .context("the TLS server configuration")?;
        // No ALPN: both clients speak HTTP/1.1, as the router does.
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let handshakes = Arc::new(AtomicU64::new(0));
        let counted = handshakes.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let (acceptor, counted) = (acceptor.clone(), counted.clone());
                tokio::spawn(async move {
                    let _ = stream.set_nodelay(true);
                    // A client that does not trust the certificate aborts here.
                    let Ok(mut tls) = acceptor.accept(stream).await else { return };
                    counted.fetch_add(1, Ordering::SeqCst);
                    let Ok(mut plain) = TcpStream::connect(upstream).await else { return };
                    let _ = plain.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        });
        Ok(Self { addr, bundle, handshakes, task })
    }

    /// TLS handshakes completed since the last [`TlsFront::reset_handshakes`].
    pub fn handshakes(&self) -> u64 {
        self.handshakes.load(Ordering::SeqCst)
    }

    pub fn reset_handshakes(&self) {
        self.handshakes.store(0, Ordering::SeqCst);
    }

    /// `https://localhost:<port>`: the name the certificate is for.
    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    /// The PEM bundle both sides trust (system roots + the run's CA).
    pub fn bundle(&self) -> &Path {
        &self.bundle
    }
}

/// `openssl` CLI: a CA, a server certificate it signs, and the trust bundle. Returns the paths of
/// (server certificate, server key, bundle).
fn make_certificates(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir)?;
    let path = |name: &str| dir.join(name);
    let run = |args: &[&str]| -> anyhow::Result<()> {
        let output = Command::new("openssl").args(args).current_dir(dir).output().context("running openssl")?;
        if !output.status.success() {
            bail!("openssl {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr));
        }
        Ok(())
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=ec2patch-bench CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    ]
    .concat())?;
    run(&[&["req"][..], &ec, &["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"]].concat())?;
    std::fs::write(
        path("server.ext"),
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n\
         subjectAltName=DNS:localhost,IP:127.0.0.1\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n",
    )?;
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "server.pem",
    ])?;
    let mut bundle = SYSTEM_ROOTS.iter().find_map(|p| std::fs::read_to_string(p).ok()).unwrap_or_default();
    if !bundle.ends_with('\n') && !bundle.is_empty() {
        bundle.push('\n');
    }
    bundle.push_str(&std::fs::read_to_string(path("ca.pem"))?);
    std::fs::write(path("bundle.pem"), bundle)?;
    Ok((path("server.pem"), path("server.key"), path("bundle.pem")))
}

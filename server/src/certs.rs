//! `schoolsync-server certs`: a private CA and a server certificate for a trial deployment.
//!
//! Writes `ca.pem` (give it to agents and relays: `--ca`), `ca.key` (keep it offline),
//! `server.pem` / `server.key` valid for the given host names and IP addresses plus localhost, and
//! `relay-client.pem` / `relay-client.key`, a client certificate for relays when the city asks for
//! mutual TLS (`client_ca`).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Paths of the files written.
#[derive(Clone, Debug)]
pub struct CertFiles {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// A client certificate for relays (mutual TLS towards the city).
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

fn write(path: PathBuf, text: &str, secret: bool) -> Result<PathBuf, CertError> {
    let err = |source| CertError::Write {
        path: path.clone(),
        source,
    };
    std::fs::write(&path, text).map_err(err)?;
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    }
    #[cfg(not(unix))]
    let _ = secret; // Windows: the file inherits the folder's ACL (the operator's profile).
    Ok(path)
}

/// Generates the CA and a server certificate for `hosts` (names or IP addresses) in `out`.
pub fn generate(out: &Path, hosts: &[String]) -> Result<CertFiles, CertError> {
    std::fs::create_dir_all(out).map_err(|source| CertError::Write {
        path: out.to_owned(),
        source,
    })?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "schoolsync trial CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate()?;
    let ca_key_pem = ca_key.serialize_pem();
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key)?;

    let mut names: Vec<String> = hosts
        .iter()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .collect();
    for default in ["localhost", "127.0.0.1", "::1"] {
        if !names.iter().any(|n| n == default) {
            names.push(default.to_owned());
        }
    }
    let mut server_params = CertificateParams::new(names)?;
    server_params
        .distinguished_name
        .push(DnType::CommonName, "schoolsync server");
    let server_key = KeyPair::generate()?;
    let server_cert = server_params.signed_by(&server_key, &ca)?;
    let mut client_params = CertificateParams::new(Vec::<String>::new())?;
    client_params
        .distinguished_name
        .push(DnType::CommonName, "schoolsync relay");
    client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_key = KeyPair::generate()?;
    let client_cert = client_params.signed_by(&client_key, &ca)?;

    Ok(CertFiles {
        ca_cert: write(out.join("ca.pem"), &ca.pem(), false)?,
        ca_key: write(out.join("ca.key"), &ca_key_pem, true)?,
        server_cert: write(out.join("server.pem"), &server_cert.pem(), false)?,
        server_key: write(out.join("server.key"), &server_key.serialize_pem(), true)?,
        client_cert: write(out.join("relay-client.pem"), &client_cert.pem(), false)?,
        client_key: write(
            out.join("relay-client.key"),
            &client_key.serialize_pem(),
            true,
        )?,
    })
}

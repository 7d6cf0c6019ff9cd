//! A private certificate authority for servers the tests start (PostgreSQL with TLS, the
//! Kubernetes control plane), made with the `openssl` command line (Debian ships it;
//! the `postgresql` package depends on it). Keys are EC P-256; certificates last two days.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

/// What a certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// A TLS server (extendedKeyUsage serverAuth).
    Server,
    /// A TLS client (extendedKeyUsage clientAuth): Kubernetes reads the user from the
    /// CN and the groups from the O entries.
    Client,
}

/// A CA in a folder: `ca.crt` and `ca.key`.
pub struct Ca {
    dir: PathBuf,
}

/// A certificate and key issued by a [`Ca`], as files.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM, mode 0600).
    pub key: PathBuf,
}

const EC: [&str; 5] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];

fn openssl(dir: &Path, args: &[&str]) {
    let out =
        Command::new("openssl").current_dir(dir).args(args).output().expect("openssl runs (apt-get install openssl)");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

impl Ca {
    /// A new CA named `name`, in `dir` (created).
    pub fn new(dir: &Path, name: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let subject = format!("/CN={name}");
        let args = [
            &["req", "-x509"][..],
            &EC,
            &["-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", &subject],
            &["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ]
        .concat();
        openssl(dir, &args);
        Self { dir: dir.to_path_buf() }
    }

    /// The CA certificate's path.
    pub fn cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// The CA certificate (PEM).
    pub fn pem(&self) -> String {
        std::fs::read_to_string(self.cert()).unwrap()
    }

    /// Issues `<file>.crt` and `<file>.key` for common name `cn`, organisations `orgs`
    /// and IP or DNS subject alternative names `sans` ("127.0.0.1", "localhost").
    pub fn issue(&self, file: &str, usage: Usage, cn: &str, orgs: &[&str], sans: &[&str]) -> Issued {
        let (key, csr, crt, ext) =
            (format!("{file}.key"), format!("{file}.csr"), format!("{file}.crt"), format!("{file}.ext"));
        let subject: String = orgs.iter().map(|o| format!("/O={o}")).chain([format!("/CN={cn}")]).collect();
        openssl(&self.dir, &[&["req"][..], &EC, &["-keyout", &key, "-out", &csr, "-subj", &subject]].concat());
        let mut extensions = String::from("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n");
        extensions.push_str(match usage {
            Usage::Server => "extendedKeyUsage=serverAuth\n",
            Usage::Client => "extendedKeyUsage=clientAuth\n",
        });
        if !sans.is_empty() {
            let names: Vec<String> = sans
                .iter()
                .map(|s| if s.parse::<std::net::IpAddr>().is_ok() { format!("IP:{s}") } else { format!("DNS:{s}") })
                .collect();
            extensions.push_str(&format!("subjectAltName={}\n", names.join(",")));
        }
        std::fs::write(self.dir.join(&ext), extensions).unwrap();
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &crt,
                "-days",
                "2",
                "-extfile",
                &ext,
            ],
        );
        let key = self.dir.join(key);
        // Servers (PostgreSQL among them) refuse a key others can read.
        std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        Issued { cert: self.dir.join(crt), key }
    }
}

/// An EC P-256 key pair for signing tokens: `<file>.key` (private, PEM) and
/// `<file>.pub` (public, PEM), in `dir`.
pub fn signing_key(dir: &Path, file: &str) -> Issued {
    let (key, public) = (format!("{file}.key"), format!("{file}.pub"));
    openssl(dir, &["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", &key]);
    openssl(dir, &["ec", "-in", &key, "-pubout", "-out", &public]);
    Issued { cert: dir.join(public), key: dir.join(key) }
}

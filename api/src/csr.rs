//! What a PKCS#10 certificate request (a CertificateSigningRequest's `spec.request`) asks for,
//! as far as the signers and approvers judge it: the subject's CN and O, and how many subject
//! alternative names of each kind. The apiserver's signers and the csrapproving controller read
//! requests through here.

use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

/// The parts of a request signers and approvers look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateRequest {
    /// The subject's CN (the last one, as Go's x509 keeps it); empty when absent.
    pub common_name: String,
    /// Every O of the subject, in order.
    pub organizations: Vec<String>,
    /// DNS and IP subject alternative names.
    pub dns_or_ip: usize,
    /// Every other kind of subject alternative name (email, URI, …).
    pub email_or_uri: usize,
}

/// Reads the PEM `CERTIFICATE REQUEST` in `pem` and checks its self-signature; the error says
/// what is wrong, in upstream's words where it has them.
pub fn parse(pem: &[u8]) -> Result<CertificateRequest, String> {
    let (_, block) =
        x509_parser::pem::parse_x509_pem(pem).map_err(|_| "not a PEM block".to_string())?;
    if block.label != "CERTIFICATE REQUEST" {
        return Err(format!(
            "PEM block type must be CERTIFICATE REQUEST, not {}",
            block.label
        ));
    }
    let (_, csr) =
        x509_parser::certification_request::X509CertificationRequest::from_der(&block.contents)
            .map_err(|e| format!("not a certificate request: {e}"))?;
    csr.verify_signature()
        .map_err(|_| "the request's signature does not verify".to_string())?;
    let subject = &csr.certification_request_info.subject;
    let strings = |it: &mut dyn Iterator<Item = &x509_parser::x509::AttributeTypeAndValue>| {
        it.filter_map(|a| a.as_str().ok().map(str::to_string))
            .collect::<Vec<_>>()
    };
    let (mut dns_or_ip, mut email_or_uri) = (0, 0);
    for ext in csr.requested_extensions().into_iter().flatten() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext {
            for name in &san.general_names {
                match name {
                    GeneralName::DNSName(_) | GeneralName::IPAddress(_) => dns_or_ip += 1,
                    _ => email_or_uri += 1,
                }
            }
        }
    }
    Ok(CertificateRequest {
        common_name: strings(&mut subject.iter_common_name())
            .pop()
            .unwrap_or_default(),
        organizations: strings(&mut subject.iter_organization()),
        dns_or_ip,
        email_or_uri,
    })
}

/// Requests made up for tests (feature `test-util`).
#[cfg(any(test, feature = "test-util"))]
pub mod testing {
    /// A PEM request for `CN=cn` with the organizations `orgs` (rcgen keeps only the last of
    /// several) and the subject alternative names `sans` (IPs or DNS names), and its key.
    pub fn request(cn: &str, orgs: &[&str], sans: &[&str]) -> (String, rcgen::KeyPair) {
        let key = rcgen::KeyPair::generate().expect("generating a key");
        let mut params =
            rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("subject alternative names");
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        for o in orgs {
            params
                .distinguished_name
                .push(rcgen::DnType::OrganizationName, *o);
        }
        let pem = params
            .serialize_request(&key)
            .and_then(|r| r.pem())
            .expect("serializing the request");
        (pem, key)
    }
}

#[cfg(test)]
mod tests {
    use super::testing::request;
    use super::*;

    #[test]
    fn subjects_names_and_what_is_not_a_request() {
        let (pem, _) = request(
            "system:node:n9",
            &["system:nodes"],
            &["n9.example", "10.0.0.9"],
        );
        assert_eq!(
            parse(pem.as_bytes()).unwrap(),
            CertificateRequest {
                common_name: "system:node:n9".into(),
                organizations: vec!["system:nodes".into()],
                dns_or_ip: 2,
                email_or_uri: 0,
            }
        );
        assert_eq!(parse(b"garbage").unwrap_err(), "not a PEM block");
        let cert = rcgen::CertificateParams::new(Vec::<String>::new())
            .unwrap()
            .self_signed(&rcgen::KeyPair::generate().unwrap())
            .unwrap();
        assert!(
            parse(cert.pem().as_bytes())
                .unwrap_err()
                .contains("must be CERTIFICATE REQUEST")
        );
    }
}

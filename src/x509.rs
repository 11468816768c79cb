//! The few fields of a verified client certificate that mod_openssl exports to programs
//! (`SSL_CLIENT_S_DN_*`, `SSL_CLIENT_M_SERIAL`), read from its DER. Pure: the certificate
//! was verified by rustls before anything here looks at it; a shape this reader does not
//! expect gives `None`, never a panic.

/// Subject attributes (OpenSSL's short names) and the serial number.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct CertFields {
    /// `(name, value)` in the order of the subject, e.g. `("CN", "alice")`.
    pub subject: Vec<(String, String)>,
    /// Upper-case hex, as OpenSSL prints it (`SSL_CLIENT_M_SERIAL`).
    pub serial: String,
}

impl CertFields {
    /// The subject as OpenSSL's one-line form (`/C=DE/O=Example/CN=alice`), mod_openssl's
    /// `SSL_CLIENT_S_DN`.
    pub fn subject_line(&self) -> String {
        self.subject.iter().map(|(k, v)| format!("/{k}={v}")).collect()
    }
}

/// mod_openssl's client-certificate variables for a stdio program: `SSL_CLIENT_VERIFY`
/// (`SUCCESS` with a verified certificate, `NONE` without one), the subject
/// (`SSL_CLIENT_S_DN`, `SSL_CLIENT_S_DN_<attr>`), `SSL_CLIENT_M_SERIAL`, and, when
/// `username` names a field that is present, `REMOTE_USER` with `AUTH_TYPE`.
pub fn client_env(cert: Option<&CertFields>, username: Option<&str>) -> Vec<(String, String)> {
    let Some(c) = cert else {
        return vec![("SSL_CLIENT_VERIFY".into(), "NONE".into())];
    };
    let mut env = vec![("SSL_CLIENT_VERIFY".to_string(), "SUCCESS".to_string()), ("SSL_CLIENT_S_DN".to_string(), c.subject_line())];
    for (k, v) in &c.subject {
        let name = format!("SSL_CLIENT_S_DN_{k}");
        if !env.iter().any(|(n, _)| *n == name) {
            env.push((name, v.clone()));
        }
    }
    env.push(("SSL_CLIENT_M_SERIAL".into(), c.serial.clone()));
    if let Some(user) = username.and_then(|u| env.iter().find(|(n, _)| n == u)).map(|(_, v)| v.clone()) {
        env.push(("REMOTE_USER".into(), user));
        env.push(("AUTH_TYPE".into(), "SSL_CLIENT_VERIFY".into()));
    }
    env
}

/// One DER element: tag, content, and what follows it.
fn element(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |a, &b| (a << 8) | usize::from(b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const INTEGER: u8 = 0x02;
const OID: u8 = 0x06;

/// OpenSSL's short name of an attribute type (DER of its OID after the tag and length).
fn attr_name(oid: &[u8]) -> Option<&'static str> {
    Some(match oid {
        [0x55, 0x04, 0x03] => "CN",
        [0x55, 0x04, 0x06] => "C",
        [0x55, 0x04, 0x07] => "L",
        [0x55, 0x04, 0x08] => "ST",
        [0x55, 0x04, 0x0a] => "O",
        [0x55, 0x04, 0x0b] => "OU",
        [0x55, 0x04, 0x05] => "serialNumber",
        [0x55, 0x04, 0x2a] => "GN",
        [0x55, 0x04, 0x04] => "SN",
        [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01] => "emailAddress",
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01] => "UID",
        _ => return None,
    })
}

/// Reads the subject and serial of a DER certificate.
pub fn fields(der: &[u8]) -> Option<CertFields> {
    let (tag, cert, _) = element(der)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, tbs, _) = element(cert)?;
    if tag != SEQUENCE {
        return None;
    }
    let mut rest = tbs;
    // [0] EXPLICIT version, when present.
    let (tag, _, after) = element(rest)?;
    if tag == 0xa0 {
        rest = after;
    }
    let (tag, serial, after) = element(rest)?;
    if tag != INTEGER {
        return None;
    }
    rest = after;
    // signature algorithm, issuer, validity, then the subject.
    for _ in 0..3 {
        rest = element(rest)?.2;
    }
    let (tag, mut name, _) = element(rest)?;
    if tag != SEQUENCE {
        return None;
    }
    let mut subject = Vec::new();
    while !name.is_empty() {
        let (tag, mut rdn, after) = element(name)?;
        if tag != SET {
            return None;
        }
        name = after;
        while !rdn.is_empty() {
            let (_, atv, after) = element(rdn)?;
            rdn = after;
            let (tag, oid, value) = element(atv)?;
            if tag != OID {
                return None;
            }
            let (_, text, _) = element(value)?;
            if let Some(n) = attr_name(oid) {
                subject.push((n.to_string(), String::from_utf8_lossy(text).into_owned()));
            }
        }
    }
    // An INTEGER's leading 0x00 only keeps it positive; OpenSSL prints none.
    let serial = match serial {
        [0, rest @ ..] if !rest.is_empty() => rest,
        s => s,
    };
    let serial = serial.iter().map(|b| format!("{b:02X}")).collect();
    Some(CertFields { subject, serial })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A certificate's structure for "/C=DE/O=wstund/CN=alice" with serial 0x0102AB.
    fn cert() -> Vec<u8> {
        // Hand-assembled TBS with a dummy signature: only the structure matters here.
        fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
            let mut v = vec![tag];
            if body.len() < 0x80 {
                v.push(body.len() as u8);
            } else {
                v.extend_from_slice(&[0x82, (body.len() >> 8) as u8, body.len() as u8]);
            }
            v.extend_from_slice(body);
            v
        }
        let atv = |oid: &[u8], s: &str| tlv(SET, &tlv(SEQUENCE, &[tlv(OID, oid), tlv(0x0c, s.as_bytes())].concat()));
        let name = tlv(SEQUENCE, &[atv(&[0x55, 4, 6], "DE"), atv(&[0x55, 4, 10], "wstund"), atv(&[0x55, 4, 3], "alice")].concat());
        let alg = tlv(SEQUENCE, &tlv(OID, &[0x2a, 0x86, 0x48]));
        let validity = tlv(SEQUENCE, &[]);
        let tbs = tlv(
            SEQUENCE,
            &[tlv(0xa0, &tlv(INTEGER, &[2])), tlv(INTEGER, &[0, 0x01, 0x02, 0xab]), alg.clone(), name.clone(), validity, name].concat(),
        );
        tlv(SEQUENCE, &[tbs, alg, tlv(0x03, &[0])].concat())
    }

    #[test]
    fn subject_and_serial() {
        let f = fields(&cert()).unwrap();
        assert_eq!(f.subject.last(), Some(&("CN".to_string(), "alice".to_string())));
        assert_eq!(f.subject_line(), "/C=DE/O=wstund/CN=alice");
        assert_eq!(f.serial, "0102AB");
    }

    #[test]
    fn client_env_names_are_mod_openssls() {
        let f = fields(&cert()).unwrap();
        let env = client_env(Some(&f), Some("SSL_CLIENT_S_DN_CN"));
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("SSL_CLIENT_VERIFY"), Some("SUCCESS"));
        assert_eq!(get("SSL_CLIENT_S_DN_CN"), Some("alice"));
        assert_eq!(get("SSL_CLIENT_S_DN_O"), Some("wstund"));
        assert_eq!(get("SSL_CLIENT_M_SERIAL"), Some("0102AB"));
        assert_eq!(get("REMOTE_USER"), Some("alice"));
        assert!(client_env(Some(&f), None).iter().all(|(n, _)| n != "REMOTE_USER"));
        assert_eq!(client_env(None, Some("SSL_CLIENT_S_DN_CN")), vec![("SSL_CLIENT_VERIFY".to_string(), "NONE".to_string())]);
    }

    #[test]
    fn truncated_input_is_none() {
        let c = cert();
        for n in 0..c.len() {
            assert!(fields(&c[..n]).is_none(), "{n} of {} bytes", c.len());
        }
        assert!(fields(&[]).is_none());
        assert!(fields(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_none());
    }
}

//! Checking a password against a userfile secret. bcrypt and SHA-crypt come from
//! well-kept crates (`bcrypt`, RustCrypto's `sha-crypt`); MD5-crypt (`$apr1$`, `$1$`) is
//! the short public-domain algorithm over RustCrypto's `md-5`, written out here because
//! no maintained crate offers apr1. Every comparison is constant-time.

use md5::{Digest, Md5};
use sha_crypt::PasswordVerifier;

use super::userfile::Secret;

/// Whether `password` matches. Blocks for as long as the hash takes: bcrypt cost 10 is
/// tens of milliseconds (see README, "Authentication").
pub fn verify(secret: &Secret, password: &[u8]) -> bool {
    match secret {
        Secret::Plain(p) => ct_eq(p.as_bytes(), password),
        Secret::Bcrypt { hash, .. } => bcrypt::verify(password, hash).unwrap_or(false),
        Secret::ShaCrypt(hash) => sha_crypt::ShaCrypt::default().verify_password(password, hash.as_str()).is_ok(),
        Secret::Md5Crypt(hash) => md5_crypt_check(password, hash),
    }
}

/// Equal length and bytes, in time that depends only on the lengths.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn md5_crypt_check(password: &[u8], stored: &str) -> bool {
    let Some(rest) = stored.strip_prefix('$') else { return false };
    let Some((id, body)) = rest.split_once('$') else { return false };
    let Some((salt, _)) = body.split_once('$') else { return false };
    let magic = format!("${id}$");
    let computed = md5_crypt(password, salt.as_bytes(), magic.as_bytes());
    ct_eq(computed.as_bytes(), stored.as_bytes())
}

const ITOA64: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Poul-Henning Kamp's MD5-crypt; `magic` is `$1$` or Apache's `$apr1$`. The whole
/// `magic salt $ hash` string.
pub fn md5_crypt(pw: &[u8], salt: &[u8], magic: &[u8]) -> String {
    let salt = &salt[..salt.len().min(8)];
    let mut ctx = Md5::new();
    ctx.update(pw);
    ctx.update(magic);
    ctx.update(salt);
    let mut alt = Md5::new();
    alt.update(pw);
    alt.update(salt);
    alt.update(pw);
    let alt = alt.finalize();
    let mut left = pw.len();
    while left > 0 {
        let n = left.min(16);
        ctx.update(&alt[..n]);
        left -= n;
    }
    let mut i = pw.len();
    while i > 0 {
        if i & 1 == 1 {
            ctx.update([0u8]);
        } else {
            ctx.update(&pw[..1]);
        }
        i >>= 1;
    }
    let mut fin = ctx.finalize();
    for r in 0..1000 {
        let mut c = Md5::new();
        if r & 1 == 1 {
            c.update(pw);
        } else {
            c.update(fin);
        }
        if r % 3 != 0 {
            c.update(salt);
        }
        if r % 7 != 0 {
            c.update(pw);
        }
        if r & 1 == 1 {
            c.update(fin);
        } else {
            c.update(pw);
        }
        fin = c.finalize();
    }
    let f = fin;
    let mut out = String::with_capacity(magic.len() + salt.len() + 23);
    out.push_str(&String::from_utf8_lossy(magic));
    out.push_str(&String::from_utf8_lossy(salt));
    out.push('$');
    let mut put = |v: u32, n: usize| {
        let mut v = v;
        for _ in 0..n {
            out.push(char::from(ITOA64[(v & 0x3f) as usize]));
            v >>= 6;
        }
    };
    for (a, b, c) in [(0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)] {
        put((u32::from(f[a]) << 16) | (u32::from(f[b]) << 8) | u32::from(f[c]), 4);
    }
    put(u32::from(f[11]), 2);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_crypt_known_answers() {
        // openssl passwd -apr1 -salt xxxxxxxx password / openssl passwd -1 -salt saltsalt password
        assert_eq!(md5_crypt(b"password", b"xxxxxxxx", b"$apr1$"), "$apr1$xxxxxxxx$dxHfLAsjHkDRmG83UXe8K0");
        assert_eq!(md5_crypt(b"password", b"saltsalt", b"$1$"), "$1$saltsalt$qjXMvbEw8oaL.CzflDtaK/");
        assert!(verify(&Secret::Md5Crypt("$apr1$xxxxxxxx$dxHfLAsjHkDRmG83UXe8K0".into()), b"password"));
        assert!(!verify(&Secret::Md5Crypt("$apr1$xxxxxxxx$dxHfLAsjHkDRmG83UXe8K0".into()), b"passwore"));
    }

    #[test]
    fn sha_crypt_and_bcrypt_and_plain() {
        // openssl passwd -6 -salt saltstring "Hello world!" (glibc's test vector)
        let six = "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1";
        assert!(verify(&Secret::ShaCrypt(six.into()), b"Hello world!"));
        assert!(!verify(&Secret::ShaCrypt(six.into()), b"Hello world"));
        let five = "$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5";
        assert!(verify(&Secret::ShaCrypt(five.into()), b"Hello world!"));
        let b = bcrypt::hash_with_salt(b"s3cret", 4, [7u8; 16]).map(|h| h.format_for_version(bcrypt::Version::TwoY)).unwrap();
        assert!(verify(&Secret::Bcrypt { hash: b.clone(), cost: 4 }, b"s3cret"));
        assert!(!verify(&Secret::Bcrypt { hash: b, cost: 4 }, b"s3creT"));
        assert!(verify(&Secret::Plain("pw".into()), b"pw"));
        assert!(!verify(&Secret::Plain("pw".into()), b"pw2"));
        assert!(!ct_eq(b"a", b"ab"));
    }
}

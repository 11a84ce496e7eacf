//! Signed approvals with git's SSH signatures: `ssh-keygen -Y sign` makes
//! them, `ssh-keygen -Y find-principals` and `-Y verify` check them against
//! an allowed-signers file, so its `namespaces=`, `valid-after=`,
//! `valid-before=` and `cert-authority` options mean what they mean to git.
//!
//! ssh-keygen runs with a cleared environment (only `PATH` and `HOME`); the
//! statement and the signature go through files in a private temporary
//! folder, never on a command line.

use crate::exit::Refusal;
use base64::Engine;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// The signature namespace (`-n`): a signature made for git commits or
/// files cannot pass as an approval, nor the other way round.
pub const NAMESPACE: &str = "deployhost-approval";

fn ssh_keygen() -> Command {
    let mut cmd = Command::new("ssh-keygen");
    cmd.env_clear();
    for k in ["PATH", "HOME"] {
        if let Some(v) = std::env::var_os(k) {
            cmd.env(k, v);
        }
    }
    cmd
}

fn run(mut cmd: Command, stdin: Option<&Path>) -> Result<Output, Refusal> {
    cmd.stdin(match stdin {
        Some(path) => std::fs::File::open(path).map(Stdio::from).map_err(|e| Refusal::Invalid(e.to_string()))?,
        None => Stdio::null(),
    });
    cmd.output().map_err(|e| {
        Refusal::Invalid(format!(
            "cannot run ssh-keygen ({e}): install OpenSSH's client tools (Debian: openssh-client)"
        ))
    })
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).trim().replace('\n', "; ")
}

/// Signs `statement` with the private key at `key` (a passphrase is asked
/// on the terminal by ssh-keygen itself); returns the armored signature.
pub fn sign(key: &Path, statement: &str) -> Result<String, Refusal> {
    sign_in(NAMESPACE, key, statement)
}

/// [`sign`] in `namespace` (a provenance's is `deployhost-attestation`).
pub fn sign_in(namespace: &str, key: &Path, statement: &str) -> Result<String, Refusal> {
    if !key.is_file() {
        return Err(Refusal::Invalid(format!("no key file at {}", key.display())));
    }
    let dir = tempfile::tempdir().map_err(|e| Refusal::Invalid(e.to_string()))?;
    let file = dir.path().join("statement");
    std::fs::write(&file, statement).map_err(|e| Refusal::Invalid(e.to_string()))?;
    let mut cmd = ssh_keygen();
    cmd.args(["-q", "-Y", "sign", "-n", namespace, "-f"]).arg(key).arg(&file);
    // ssh-keygen asks for a passphrase on the terminal, not on stdin.
    cmd.stdin(Stdio::null());
    let out = cmd.output().map_err(|e| {
        Refusal::Invalid(format!("cannot run ssh-keygen ({e}): install OpenSSH's client tools (openssh-client)"))
    })?;
    if !out.status.success() {
        return Err(Refusal::Invalid(format!("ssh-keygen could not sign with {}: {}", key.display(), stderr_of(&out))));
    }
    std::fs::read_to_string(dir.path().join("statement.sig"))
        .map_err(|e| Refusal::Invalid(format!("ssh-keygen wrote no signature: {e}")))
}

/// A signature that verified: who made it, with which key.
#[derive(Debug, Clone)]
pub struct Verified {
    /// Every principal of the allowed-signers file the signature verifies
    /// for (one key may be listed under several).
    pub principals: Vec<String>,
    /// `SHA256:…` of the signing key.
    pub fingerprint: Option<String>,
}

/// The namespace a signature was made in, read from its SSHSIG blob.
fn signed_namespace(armored: &str) -> Option<String> {
    let body: String = armored.lines().filter(|l| !l.starts_with("-----")).map(str::trim).collect();
    let blob = base64::engine::general_purpose::STANDARD.decode(body).ok()?;
    let rest = blob.strip_prefix(b"SSHSIG")?.get(4..)?;
    let string = |b: &[u8]| -> Option<(Vec<u8>, usize)> {
        let len = u32::from_be_bytes(b.get(..4)?.try_into().ok()?) as usize;
        Some((b.get(4..4 + len)?.to_vec(), 4 + len))
    };
    let (_, used) = string(rest)?;
    let (namespace, _) = string(rest.get(used..)?)?;
    String::from_utf8(namespace).ok()
}

/// Checks that `signature` is a signature of exactly `statement`, in the
/// approval namespace, by a key `allowed_signers` lists (valid now).
pub fn verify(allowed_signers: &Path, statement: &str, signature: &str) -> Result<Verified, Refusal> {
    verify_in(NAMESPACE, allowed_signers, statement, signature)
}

/// [`verify`] in `namespace`.
pub fn verify_in(
    namespace: &str,
    allowed_signers: &Path,
    statement: &str,
    signature: &str,
) -> Result<Verified, Refusal> {
    if let Err(e) = crate::files::read_regular_string(allowed_signers, 1 << 20) {
        return Err(Refusal::Invalid(format!(
            "cannot read the allowed-signers file {}: {e}",
            allowed_signers.display()
        )));
    }
    if !signature.contains("-----BEGIN SSH SIGNATURE-----") {
        return Err(Refusal::Refused("the signature is not an SSH signature".into()));
    }
    if let Some(ns) = signed_namespace(signature).filter(|ns| ns != namespace) {
        return Err(Refusal::Refused(format!(
            "the signature was made for namespace `{ns}`, not `{namespace}`: a signature made for something else \
             (a git commit, a file, an approval or a provenance) does not stand for this one"
        )));
    }
    let dir = tempfile::tempdir().map_err(|e| Refusal::Invalid(e.to_string()))?;
    let (msg, sig) = (dir.path().join("statement"), dir.path().join("statement.sig"));
    std::fs::write(&msg, statement).map_err(|e| Refusal::Invalid(e.to_string()))?;
    std::fs::write(&sig, signature).map_err(|e| Refusal::Invalid(e.to_string()))?;

    let mut find = ssh_keygen();
    find.args(["-Y", "find-principals", "-s"]).arg(&sig).arg("-f").arg(allowed_signers);
    let found = run(find, None)?;
    let principals: Vec<String> = String::from_utf8_lossy(&found.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if !found.status.success() || principals.is_empty() {
        return Err(Refusal::Refused(format!(
            "the signing key is not listed in {} (or not valid now){}",
            allowed_signers.display(),
            Some(stderr_of(&found)).filter(|e| !e.is_empty()).map(|e| format!(": {e}")).unwrap_or_default()
        )));
    }
    let mut verified = Verified { principals: Vec::new(), fingerprint: None };
    let mut last_error = String::new();
    for principal in &principals {
        let mut check = ssh_keygen();
        check
            .args(["-Y", "verify", "-f"])
            .arg(allowed_signers)
            .args(["-I", principal, "-n", namespace, "-s"])
            .arg(&sig);
        let out = run(check, Some(&msg))?;
        if out.status.success() {
            let said = String::from_utf8_lossy(&out.stdout);
            verified.fingerprint =
                said.split_whitespace().find(|w| w.starts_with("SHA256:")).map(str::to_string).or(verified.fingerprint);
            verified.principals.push(principal.clone());
        } else {
            last_error = stderr_of(&out);
        }
    }
    if verified.principals.is_empty() {
        return Err(Refusal::Refused(format!(
            "the signature by {} does not verify for this run: it was made for another statement (another run, \
             version, environment or plugin digests) or is not permitted in namespace `{namespace}` \
             ({last_error})",
            principals.join(", ")
        )));
    }
    Ok(verified)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_namespace_of_a_signature() {
        // SSHSIG, version 1, an empty key, namespace "git".
        let mut blob = b"SSHSIG".to_vec();
        blob.extend(1u32.to_be_bytes());
        blob.extend(0u32.to_be_bytes());
        blob.extend(3u32.to_be_bytes());
        blob.extend(b"git");
        let armored = format!(
            "-----BEGIN SSH SIGNATURE-----\n{}\n-----END SSH SIGNATURE-----\n",
            base64::engine::general_purpose::STANDARD.encode(&blob)
        );
        assert_eq!(signed_namespace(&armored).as_deref(), Some("git"));
        assert_eq!(signed_namespace("nonsense"), None);
    }
}

//! `approval: github`: the approval GitHub recorded for this workflow run's
//! environment, read from the REST API.
//!
//! The job must run in a GitHub environment of the same name as the
//! deployhost environment, protected by required reviewers: GitHub then
//! holds the job until a reviewer approves it, and records who did. The
//! env contract (the generated workflow sets it up):
//!
//! - `GITHUB_API_URL`, `GITHUB_REPOSITORY`, `GITHUB_RUN_ID`: set by the runner;
//! - `DEPLOYHOST_GITHUB_TOKEN`, else `GITHUB_TOKEN`: a token that may read
//!   the run (`permissions: actions: read`; the workflow passes
//!   `GITHUB_TOKEN: ${{ secrets.DEPLOYHOST_GITHUB_TOKEN || github.token }}`).
//!   Team approvers (`@org/team`) need a token that may read the org's team
//!   memberships (`read:org`), which `github.token` cannot: set the
//!   `DEPLOYHOST_GITHUB_TOKEN` secret for them.
//!
//! Requests go through the host's own HTTP client (wasmtime-wasi-http's
//! `default_send_request`: hyper, with rustls and the webpki roots for https).

use super::ApprovalError;
use bytes::Bytes;
use http_body_util::BodyExt;
use serde_json::Value;
use std::time::Duration;

/// Where and as whom to ask.
pub struct Api {
    base: url::Url,
    repository: String,
    run_id: String,
    token: String,
}

fn invalid(m: impl Into<String>) -> ApprovalError {
    ApprovalError::Invalid(m.into())
}

fn refused(m: impl Into<String>) -> ApprovalError {
    ApprovalError::Refused(m.into())
}

/// A path segment GitHub could name (owner, repository, login, team slug).
fn segment_ok(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) && s != ".."
}

impl Api {
    /// From the runner's environment; says what is missing.
    pub fn from_env() -> Result<Api, ApprovalError> {
        let var = |k: &str| std::env::var(k).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let base = var("GITHUB_API_URL").unwrap_or_else(|| "https://api.github.com".into());
        let base = url::Url::parse(&base).map_err(|e| invalid(format!("GITHUB_API_URL `{base}`: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
            return Err(invalid(format!("GITHUB_API_URL `{base}` must be an http(s) URL")));
        }
        let (Some(repository), Some(run_id)) = (var("GITHUB_REPOSITORY"), var("GITHUB_RUN_ID")) else {
            return Err(refused(
                "`approval: github` takes the approval GitHub recorded for the workflow run: run it in GitHub \
                 Actions (GITHUB_REPOSITORY and GITHUB_RUN_ID are not set)",
            ));
        };
        if !repository.split_once('/').is_some_and(|(o, r)| segment_ok(o) && segment_ok(r)) {
            return Err(invalid(format!("GITHUB_REPOSITORY `{repository}` is not owner/name")));
        }
        if !run_id.chars().all(|c| c.is_ascii_digit()) {
            return Err(invalid(format!("GITHUB_RUN_ID `{run_id}` is not a number")));
        }
        let token = var("DEPLOYHOST_GITHUB_TOKEN").or_else(|| var("GITHUB_TOKEN")).ok_or_else(|| {
            invalid(
                "`approval: github` needs a token to read the run's approvals: DEPLOYHOST_GITHUB_TOKEN or \
                 GITHUB_TOKEN (with `permissions: actions: read`)",
            )
        })?;
        Ok(Api { base, repository, run_id, token })
    }

    /// GET `path` (below the API base); the status and the JSON body.
    async fn get(&self, path: &str) -> Result<(u16, Value), ApprovalError> {
        let url = format!("{}{path}", self.base.as_str().trim_end_matches('/'));
        let authority = match self.base.port() {
            Some(port) => format!("{}:{port}", self.base.host_str().unwrap_or_default()),
            None => self.base.host_str().unwrap_or_default().to_string(),
        };
        let body = http_body_util::Empty::<Bytes>::new().map_err(|never| match never {});
        let request = http::Request::get(&url)
            .header("host", authority)
            .header("authorization", format!("Bearer {}", self.token))
            .header("accept", "application/vnd.github+json")
            .header("x-github-api-version", "2022-11-28")
            .header("user-agent", concat!("deployhost/", env!("CARGO_PKG_VERSION")))
            .body(body)
            .map_err(|e| invalid(format!("GET {url}: {e}")))?;
        let options = wasmtime_wasi_http::RequestOptions {
            connect_timeout: Some(Duration::from_secs(10)),
            first_byte_timeout: Some(Duration::from_secs(30)),
            between_bytes_timeout: Some(Duration::from_secs(30)),
        };
        let unreachable = |e: String| refused(format!("cannot read {url} from the GitHub API: {e}"));
        let exchange = async {
            let (response, io) =
                wasmtime_wasi_http::default_send_request(request, Some(options)).await.map_err(|e| e.to_string())?;
            let io = tokio::spawn(io);
            let status = response.status().as_u16();
            let bytes = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
            io.abort();
            Ok::<_, String>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(Duration::from_secs(60), exchange)
            .await
            .map_err(|_| unreachable("no answer within 60s".into()))?
            .map_err(unreachable)?;
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok((status, value))
    }

    async fn get_ok(&self, path: &str) -> Result<Value, ApprovalError> {
        let (status, value) = self.get(path).await?;
        if !(200..300).contains(&status) {
            let said = value["message"].as_str().unwrap_or("");
            return Err(refused(format!("the GitHub API answered {status} to GET {path}: {said}")));
        }
        Ok(value)
    }

    /// Is `login` an active member of `org`'s team `team`?
    async fn in_team(&self, org: &str, team: &str, login: &str) -> Result<bool, ApprovalError> {
        if ![org, team, login].iter().all(|s| segment_ok(s)) {
            return Ok(false);
        }
        let (status, value) = self.get(&format!("/orgs/{org}/teams/{team}/memberships/{login}")).await?;
        match status {
            200 => Ok(value["state"] == "active"),
            404 => Ok(false),
            other => Err(refused(format!(
                "cannot tell whether {login} is in @{org}/{team}: the GitHub API answered {other} ({}); team \
                 approvers need a token that may read the org's teams (DEPLOYHOST_GITHUB_TOKEN)",
                value["message"].as_str().unwrap_or("")
            ))),
        }
    }
}

/// The approval GitHub recorded for this run's environment.
#[derive(Debug, Clone)]
pub struct GithubApproval {
    pub login: String,
    pub comment: String,
    /// Who started the workflow run.
    pub starter: String,
}

/// Reads and checks the run's approval for `environment`: approved (not
/// rejected), by a listed approver (a login, or an active member of a
/// listed `@org/team`), who did not start the run unless `allow_self`.
pub async fn approval(
    api: &Api,
    environment: &str,
    approvers: &[String],
    allow_self: bool,
) -> Result<GithubApproval, ApprovalError> {
    let base = format!("/repos/{}/actions/runs/{}", api.repository, api.run_id);
    let reviews = api.get_ok(&format!("{base}/approvals")).await?;
    let reviews: Vec<&Value> = reviews
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| {
            r["environments"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|e| e["name"].as_str().is_some_and(|n| n.eq_ignore_ascii_case(environment)))
        })
        .collect();
    let login = |r: &Value| r["user"]["login"].as_str().unwrap_or("someone").to_string();
    let comment = |r: &Value| r["comment"].as_str().unwrap_or("").to_string();
    if let Some(r) = reviews.iter().find(|r| r["state"] == "rejected") {
        let c = comment(r);
        return Err(refused(format!(
            "{} rejected the deployment to `{environment}` in GitHub{}",
            login(r),
            if c.is_empty() { String::new() } else { format!(": {c}") }
        )));
    }
    let approved: Vec<&&Value> = reviews.iter().filter(|r| r["state"] == "approved").collect();
    if approved.is_empty() {
        return Err(refused(format!(
            "GitHub recorded no approval of environment `{environment}` for workflow run {}: the job must run in \
             the GitHub environment `{environment}`, protected by required reviewers (Settings → Environments), \
             so that GitHub holds it until a listed approver approves",
            api.run_id
        )));
    }
    let run = api.get_ok(&base).await?;
    let starter =
        run["triggering_actor"]["login"].as_str().or(run["actor"]["login"].as_str()).unwrap_or("").to_string();
    let mut refusals = Vec::new();
    for review in approved {
        let who = login(review);
        let mut listed = approvers.iter().any(|a| !a.contains('/') && super::same_person(a, &who));
        for team in approvers.iter().filter_map(|a| a.trim().trim_start_matches('@').split_once('/')) {
            if !listed && api.in_team(team.0, team.1, &who).await? {
                listed = true;
            }
        }
        if !listed {
            refusals.push(format!("{who} is not a listed approver of `{environment}` ({})", approvers.join(", ")));
        } else if !allow_self && super::same_person(&who, &starter) {
            refusals.push(format!(
                "{who} started this workflow run and may not approve it (prevent self-review; \
                 `allow_self_approval: true` allows it)"
            ));
        } else {
            return Ok(GithubApproval { login: who, comment: comment(review), starter });
        }
    }
    Err(refused(refusals.join("; ")))
}

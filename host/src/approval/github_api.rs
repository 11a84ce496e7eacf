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

use crate::exit::Refusal;
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

fn invalid(m: impl Into<String>) -> Refusal {
    Refusal::Invalid(m.into())
}

fn refused(m: impl Into<String>) -> Refusal {
    Refusal::Refused(m.into())
}

fn var(k: &str) -> Option<String> {
    std::env::var(k).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
}

/// `GITHUB_API_URL`, else api.github.com.
fn base_from_env() -> Result<url::Url, Refusal> {
    let base = var("GITHUB_API_URL").unwrap_or_else(|| "https://api.github.com".into());
    let base = url::Url::parse(&base).map_err(|e| invalid(format!("GITHUB_API_URL `{base}`: {e}")))?;
    if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
        return Err(invalid(format!("GITHUB_API_URL `{base}` must be an http(s) URL")));
    }
    Ok(base)
}

/// A path segment GitHub could name (owner, repository, login, team slug).
fn segment_ok(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) && s != ".."
}

/// `GITHUB_REPOSITORY`, if it is `owner/name`.
fn checked_repository(repository: String) -> Result<String, Refusal> {
    if repository.split_once('/').is_some_and(|(o, r)| segment_ok(o) && segment_ok(r)) {
        Ok(repository)
    } else {
        Err(invalid(format!("GITHUB_REPOSITORY `{repository}` is not owner/name")))
    }
}

/// `DEPLOYHOST_GITHUB_TOKEN`, else `GITHUB_TOKEN`; when neither is set,
/// `missing` and the `permissions:` entry the token needs (`read`).
fn token_from_env(missing: &str, permission: &str) -> Result<String, Refusal> {
    var("DEPLOYHOST_GITHUB_TOKEN").or_else(|| var("GITHUB_TOKEN")).ok_or_else(|| {
        invalid(format!(
            "{missing}: grant DEPLOYHOST_GITHUB_TOKEN or GITHUB_TOKEN (with `permissions: {permission}: read`)"
        ))
    })
}

impl Api {
    /// From the runner's environment; says what is missing.
    pub fn from_env() -> Result<Api, Refusal> {
        let base = base_from_env()?;
        let (Some(repository), Some(run_id)) = (var("GITHUB_REPOSITORY"), var("GITHUB_RUN_ID")) else {
            return Err(refused(
                "`approval: github` takes the approval GitHub recorded for the workflow run: run it in GitHub \
                 Actions (GITHUB_REPOSITORY and GITHUB_RUN_ID are not set)",
            ));
        };
        let repository = checked_repository(repository)?;
        if !run_id.chars().all(|c| c.is_ascii_digit()) {
            return Err(invalid(format!("GITHUB_RUN_ID `{run_id}` is not a number")));
        }
        let token = token_from_env("`approval: github` needs a token to read the run's approvals", "actions")?;
        Ok(Api { base, repository, run_id, token })
    }

    /// GET `path` (below the API base); the status and the JSON body.
    async fn get(&self, path: &str) -> Result<(u16, Value), Refusal> {
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

    async fn get_ok(&self, path: &str) -> Result<Value, Refusal> {
        let (status, value) = self.get(path).await?;
        if !(200..300).contains(&status) {
            let said = value["message"].as_str().unwrap_or("");
            return Err(refused(format!("the GitHub API answered {status} to GET {path}: {said}")));
        }
        Ok(value)
    }

    /// Is `login` an active member of `org`'s team `team`?
    async fn in_team(&self, org: &str, team: &str, login: &str) -> Result<bool, Refusal> {
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
) -> Result<GithubApproval, Refusal> {
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

/// A pull request's reviews as GitHub counts them: each reviewer's latest
/// review that approves, requests changes or was dismissed (a comment
/// after an approval leaves it standing).
#[derive(Debug, Clone, PartialEq)]
pub struct CodeReview {
    pub number: u64,
    /// Reviewers whose latest review approves, in the order they reviewed.
    pub approved: Vec<String>,
    /// Reviewers whose latest review requests changes.
    pub changes_requested: Vec<String>,
}

impl CodeReview {
    /// The seed's "code review approved (2+ reviewers)": two approvals and
    /// no outstanding request for changes.
    pub fn approved_enough(&self) -> bool {
        self.approved.len() >= 2 && self.changes_requested.is_empty()
    }

    /// The reviews `GET /repos/{owner}/{repo}/pulls/{number}/reviews`
    /// answered, oldest first.
    pub fn from_reviews(number: u64, reviews: &Value) -> CodeReview {
        let mut latest: Vec<(String, String)> = Vec::new();
        for r in reviews.as_array().into_iter().flatten() {
            let (Some(login), Some(state)) = (r["user"]["login"].as_str(), r["state"].as_str()) else { continue };
            if !matches!(state, "APPROVED" | "CHANGES_REQUESTED" | "DISMISSED") {
                continue;
            }
            // On a public repository anyone may review; only the repository's
            // owner, members and collaborators count.
            if !matches!(r["author_association"].as_str(), Some("OWNER" | "MEMBER" | "COLLABORATOR")) {
                continue;
            }
            latest.retain(|(who, _)| who != login);
            latest.push((login.to_string(), state.to_string()));
        }
        let with = |state: &str| latest.iter().filter(|(_, s)| s == state).map(|(who, _)| who.clone()).collect();
        CodeReview { number, approved: with("APPROVED"), changes_requested: with("CHANGES_REQUESTED") }
    }
}

/// The API for the pull request this GitHub Actions job runs for:
/// `Ok(None)` outside GitHub Actions (`GITHUB_ACTIONS` is not `true`).
pub fn pull_request_api_from_env() -> Result<Option<Api>, Refusal> {
    if var("GITHUB_ACTIONS").as_deref() != Some("true") {
        return Ok(None);
    }
    let base = base_from_env()?;
    let repository =
        checked_repository(var("GITHUB_REPOSITORY").ok_or_else(|| invalid("GITHUB_REPOSITORY is not set"))?)?;
    let token = token_from_env("no token to read the pull request's reviews", "pull-requests")?;
    Ok(Some(Api { base, repository, run_id: var("GITHUB_RUN_ID").unwrap_or_default(), token }))
}

/// The pull request of this job: the event's `pull_request.number`
/// (`GITHUB_EVENT_PATH`), else the one GitHub associates with the pushed
/// commit (`GET /repos/{owner}/{repo}/commits/{GITHUB_SHA}/pulls`).
pub async fn pull_request_number(api: &Api) -> Result<Option<u64>, Refusal> {
    if let Some(path) = var("GITHUB_EVENT_PATH") {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| invalid(format!("cannot read the event payload GITHUB_EVENT_PATH `{path}`: {e}")))?;
        let event: Value =
            serde_json::from_str(&text).map_err(|e| invalid(format!("the event payload `{path}` is not JSON: {e}")))?;
        if let Some(number) = event["pull_request"]["number"].as_u64() {
            return Ok(Some(number));
        }
    }
    let Some(sha) = var("GITHUB_SHA") else { return Ok(None) };
    if !sha.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(invalid(format!("GITHUB_SHA `{sha}` is not a commit id")));
    }
    let pulls = api.get_ok(&format!("/repos/{}/commits/{sha}/pulls", api.repository)).await?;
    let pulls = pulls.as_array().cloned().unwrap_or_default();
    let merged = pulls.iter().find(|p| p["merge_commit_sha"] == sha.as_str() || p["head"]["sha"] == sha.as_str());
    // Only the pull request that merged or carries this very commit.
    Ok(merged.and_then(|p| p["number"].as_u64()))
}

/// Pull request `number`'s reviews, counted as [`CodeReview::from_reviews`] says.
pub async fn code_review(api: &Api, number: u64) -> Result<CodeReview, Refusal> {
    let reviews = api.get_ok(&format!("/repos/{}/pulls/{number}/reviews?per_page=100", api.repository)).await?;
    Ok(CodeReview::from_reviews(number, &reviews))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn review(login: &str, state: &str) -> Value {
        json!({ "id": 1, "user": { "login": login, "type": "User" }, "state": state, "body": "", "author_association": "MEMBER", "submitted_at": "2026-11-30T08:00:00Z" })
    }

    #[test]
    fn approvals_by_people_without_write_access_do_not_count() {
        let mut outsider = review("eve", "APPROVED");
        outsider["author_association"] = json!("NONE");
        let mut contributor = review("mo", "APPROVED");
        contributor["author_association"] = json!("CONTRIBUTOR");
        let reviews = json!([review("ana", "APPROVED"), outsider, contributor]);
        let counted = CodeReview::from_reviews(7, &reviews);
        assert_eq!(counted.approved, ["ana"]);
        assert!(!counted.approved_enough());
    }

    #[test]
    fn the_latest_counting_review_of_each_reviewer_decides() {
        let two = CodeReview::from_reviews(7, &json!([review("ana", "APPROVED"), review("bo", "APPROVED")]));
        assert!(two.approved_enough(), "{two:?}");
        let one = CodeReview::from_reviews(7, &json!([review("ana", "APPROVED"), review("ana", "APPROVED")]));
        assert_eq!(one.approved, ["ana"]);
        assert!(!one.approved_enough());
        let later_changes = CodeReview::from_reviews(
            7,
            &json!([
                review("ana", "APPROVED"),
                review("bo", "APPROVED"),
                review("cy", "APPROVED"),
                review("bo", "CHANGES_REQUESTED")
            ]),
        );
        assert_eq!(
            (later_changes.approved.clone(), later_changes.changes_requested.clone()),
            (vec!["ana".to_string(), "cy".to_string()], vec!["bo".to_string()])
        );
        assert!(!later_changes.approved_enough());
        // A comment after an approval leaves it; a dismissal takes it away.
        let commented = CodeReview::from_reviews(
            7,
            &json!([review("ana", "APPROVED"), review("ana", "COMMENTED"), review("bo", "APPROVED")]),
        );
        assert!(commented.approved_enough());
        let dismissed = CodeReview::from_reviews(
            7,
            &json!([review("ana", "APPROVED"), review("ana", "DISMISSED"), review("bo", "APPROVED")]),
        );
        assert!(!dismissed.approved_enough());
    }
}

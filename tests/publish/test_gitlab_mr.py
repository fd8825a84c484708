"""gitlab_mr with python-gitlab (built by prefect-gitlab) against the GitLab REST stand-in."""

from __future__ import annotations

import gitlab
import pytest

from indexflow import gitops
from indexflow.errors import PublishError
from indexflow.gitlab_mr import MergeRequests, project_path, resolve_git_url

BRANCH = "iib-sandbox-request-42-v4.17"
MAP = {"registry.example.com/rh-osbs/iib-pub-pending": "https://gitlab.example.com/grp/index-configs.git"}


@pytest.fixture
def pushed(stack, catalog_repo, tmp_path):  # noqa: ANN001, ANN201
    """The feature branch of request 42 pushed with one new file; returns (repo_url, sha)."""
    repo = gitops.clone_branch(catalog_repo.url, "v4.17", tmp_path / "clone", stack.git_token)
    (tmp_path / "clone" / "configs" / "added.json").write_text('{"schema": "olm.package"}')
    sha = gitops.commit_all(repo, "IIB: Merge operators for request 42", "IIB", "iib@example.com")
    gitops.push_branch(repo, BRANCH, catalog_repo.url, stack.git_token)
    return catalog_repo.url, sha


def _mrs(gl, url: str) -> MergeRequests:  # noqa: ANN001
    return MergeRequests(gl, url, retry_backoff=0.01)


@pytest.mark.parametrize("index", ["registry.example.com/rh-osbs/iib-pub-pending:v4.17",
                                   "registry.example.com/rh-osbs/iib-pub-pending@sha256:" + "a" * 64,
                                   "registry.example.com/rh-osbs/iib-pub-pending:v4.17@sha256:" + "b" * 64])
def test_resolve_git_url_ignores_tag_and_digest(index: str) -> None:
    assert resolve_git_url(index, MAP) == "https://gitlab.example.com/grp/index-configs.git"


def test_resolve_git_url_missing_mapping_is_iib_text() -> None:
    with pytest.raises(PublishError) as err:
        resolve_git_url("registry.example.com/other/index:v4.17", MAP)
    assert str(err.value) == ("Git repository mapping not found for from_index: registry.example.com/other/"
                              "index:v4.17. index_to_gitlab_push_map is required.")


def test_project_path_from_repo_url() -> None:
    assert project_path("https://gitlab.example.com/grp/sub/index-configs.git") == "grp/sub/index-configs"
    assert project_path("http://127.0.0.1:8080/iib/x.git") == "iib/x"
    for bad in ("http://gitlab.example.com/grp/x.git", "git@gitlab.example.com:grp/x.git", "https://host/x"):
        with pytest.raises(PublishError, match="^Unsupported repository URL format"):
            project_path(bad)


def test_open_is_idempotent_and_sets_iib_fields(gl, pushed) -> None:  # noqa: ANN001
    url, sha = pushed
    mrs = _mrs(gl, url)
    mr = mrs.open(BRANCH, "v4.17", "42")
    again = _mrs(gl, url).open(BRANCH, "v4.17", "42")  # a re-run of the request

    assert again == mr
    assert mrs.find_open(BRANCH) == mr
    listed = mrs.project.mergerequests.list(source_branch=BRANCH, get_all=True)
    assert [m.iid for m in listed] == [mr.iid]
    full = mrs.project.mergerequests.get(mr.iid)
    assert (full.title, full.description) == ("IIB: Update for request id 42",
                                              "Automated merge request created by IIB for request 42")
    assert (full.source_branch, full.target_branch, full.sha) == (BRANCH, "v4.17", sha)
    assert full.squash is True and full.force_remove_source_branch is True
    assert mr.web_url.endswith(f"/-/merge_requests/{mr.iid}")


def test_close_twice_leaves_it_closed(gl, pushed) -> None:  # noqa: ANN001
    mrs = _mrs(gl, pushed[0])
    mr = mrs.open(BRANCH, "v4.17", "42")
    mrs.close(mr.iid)
    mrs.close(mr.iid)
    assert mrs.project.mergerequests.get(mr.iid).state == "closed"
    assert mrs.find_open(BRANCH) is None


def test_merge_is_a_real_squash_merge(stack, gl, pushed, catalog_repo, tmp_path) -> None:  # noqa: ANN001
    mrs = _mrs(gl, pushed[0])
    mr = mrs.open(BRANCH, "v4.17", "42")
    sha = mrs.merge(mr.iid)

    refs = stack.git.refs(catalog_repo.project)
    assert refs["v4.17"] == sha
    assert BRANCH not in refs  # remove_source_branch
    merged = gitops.clone_branch(catalog_repo.url, "v4.17", tmp_path / "after", stack.git_token)
    assert (tmp_path / "after" / "configs" / "added.json").read_text() == '{"schema": "olm.package"}'
    assert len(merged.head.commit.parents) == 1  # squashed onto the target
    assert mrs.project.mergerequests.get(mr.iid).state == "merged"


def test_merge_retries_busy_answers(stack, gl, pushed) -> None:  # noqa: ANN001
    mrs = _mrs(gl, pushed[0])
    mr = mrs.open(BRANCH, "v4.17", "42")
    stack.gitlab.fail_merge.extend([406, 409, 503])
    assert mrs.merge(mr.iid)
    assert stack.gitlab.fail_merge == []


def test_merge_gives_up_after_three_retries(stack, gl, pushed) -> None:  # noqa: ANN001
    mrs = _mrs(gl, pushed[0])
    mr = mrs.open(BRANCH, "v4.17", "42")
    stack.gitlab.fail_merge.extend([409, 409, 409, 409, 409])
    with pytest.raises(PublishError) as err:
        mrs.merge(mr.iid)
    assert str(err.value) == f"Failed to merge merge request {mr.iid}: HTTP 409"
    assert stack.gitlab.fail_merge == [409]  # 1 try + 3 retries


def test_merge_of_closed_mr_is_not_retried(gl, pushed) -> None:  # noqa: ANN001
    mrs = _mrs(gl, pushed[0])
    mr = mrs.open(BRANCH, "v4.17", "42")
    mrs.close(mr.iid)
    with pytest.raises(PublishError) as err:
        mrs.merge(mr.iid)
    assert str(err.value) == f"Failed to merge merge request {mr.iid}: HTTP 405"


def test_create_failure_is_iib_text(gl, catalog_repo) -> None:  # noqa: ANN001
    with pytest.raises(PublishError) as err:
        _mrs(gl, catalog_repo.url).open("no-such-branch", "v4.17", "1")
    assert str(err.value) == "Failed to create merge request: 400"


def test_unknown_project_is_one_sentence(gl, stack) -> None:  # noqa: ANN001
    with pytest.raises(PublishError, match="^GitLab project iib/nope of .* is not available: 404"):
        _mrs(gl, stack.git_repo_url("iib/nope")).find_open("x")


def test_api_requires_the_token(stack) -> None:  # noqa: ANN001
    from prefect_gitlab import GitLabCredentials

    with pytest.raises(gitlab.GitlabAuthenticationError):
        GitLabCredentials(url=stack.gitlab_url, token="not-the-token").get_client()
    anonymous = gitlab.Gitlab(stack.gitlab_url, timeout=5)
    with pytest.raises(gitlab.GitlabAuthenticationError) as err:
        anonymous.projects.get("iib/anything")
    assert err.value.response_code == 401
    with pytest.raises(PublishError, match=": 401$"):
        MergeRequests(anonymous, stack.git_repo_url("iib/anything")).find_open("x")


def test_delete_branch_through_the_api(stack, gl, pushed, catalog_repo) -> None:  # noqa: ANN001
    mrs = _mrs(gl, pushed[0])
    mrs.delete_branch(BRANCH)
    mrs.delete_branch(BRANCH)
    assert BRANCH not in stack.git.refs(catalog_repo.project)


def test_merge_retries_a_dropped_connection(stack, pushed) -> None:  # noqa: ANN001
    from sandbox.faultproxy import FaultProxy

    with FaultProxy(stack.gitlab_url.removeprefix("http://")) as proxy:
        mrs = _mrs(gitlab.Gitlab(proxy.url, private_token=stack.git_token, timeout=5), pushed[0])
        mr = mrs.open(BRANCH, "v4.17", "42")
        fault = proxy.add_fault("drop", path=r"/merge(\?|$)", method="PUT")
        assert mrs.merge(mr.iid)
        assert fault.injected == 1


def test_merge_whose_every_answer_is_lost_is_confirmed(stack, pushed) -> None:  # noqa: ANN001
    """GitLab merges but the answer never arrives; the retry then gets 405 (already merged). Reading
    the MR back confirms the merge instead of failing a run whose merge commit is already in."""
    from sandbox.faultproxy import FaultProxy

    with FaultProxy(stack.gitlab_url.removeprefix("http://")) as proxy:
        mrs = _mrs(gitlab.Gitlab(proxy.url, private_token=stack.git_token, timeout=5), pushed[0])
        mr = mrs.open(BRANCH, "v4.17", "42")
        fault = proxy.add_fault("partial", path=r"/merge(\?|$)", method="PUT", times=10)
        sha = mrs.merge(mr.iid)
        assert fault.injected >= 1
        full = mrs.project.mergerequests.get(mr.iid)
        assert full.state == "merged" and sha == (full.merge_commit_sha or full.squash_commit_sha)


def test_a_merge_that_did_not_happen_still_fails(stack, pushed) -> None:  # noqa: ANN001
    from sandbox.faultproxy import FaultProxy

    with FaultProxy(stack.gitlab_url.removeprefix("http://")) as proxy:
        mrs = _mrs(gitlab.Gitlab(proxy.url, private_token=stack.git_token, timeout=5), pushed[0])
        mr = mrs.open(BRANCH, "v4.17", "42")
        proxy.add_fault("status", path=r"/merge(\?|$)", method="PUT", status=503, times=10)
        with pytest.raises(PublishError, match=f"Failed to merge merge request {mr.iid}: HTTP 503"):
            mrs.merge(mr.iid)
        assert mrs.project.mergerequests.get(mr.iid).state == "opened"

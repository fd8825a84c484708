"""gitops with GitPython against the sandbox git server (git http-backend): clone, commit, push,
rejected push, delete, and the token never left anywhere."""

from __future__ import annotations

import logging
import subprocess

import git
import pytest

from indexflow import gitops
from indexflow.errors import PublishError


def _grep(path, needle: str) -> list[str]:  # noqa: ANN001
    out = subprocess.run(["grep", "-rlF", needle, str(path)], capture_output=True, text=True)
    return out.stdout.split()


def test_clone_commit_push_with_configured_author(stack, catalog_repo, tmp_path) -> None:  # noqa: ANN001
    repo = gitops.clone_branch(catalog_repo.url, "v4.17", tmp_path / "clone", stack.git_token)
    assert repo.git.rev_parse("--is-shallow-repository") == "true"
    assert (tmp_path / "clone" / "configs" / "etcd" / "catalog.json").is_file()
    (tmp_path / "clone" / "configs" / "new.json").write_text("{}")
    repo.git.checkout("-B", "iib-sandbox-request-1-v4.17")
    sha = gitops.commit_all(repo, "IIB: Merge operators for request 1", "IIB Bot", "iib@example.com")

    gitops.push_branch(repo, "iib-sandbox-request-1-v4.17", catalog_repo.url, stack.git_token)

    assert gitops.remote_branch_sha(catalog_repo.url, "iib-sandbox-request-1-v4.17", stack.git_token) == sha
    commit = repo.head.commit
    assert (commit.author.name, commit.author.email) == ("IIB Bot", "iib@example.com")
    assert (commit.committer.name, commit.committer.email) == ("IIB Bot", "iib@example.com")
    assert stack.git.refs(catalog_repo.project)["iib-sandbox-request-1-v4.17"] == sha


def test_token_never_in_clone_dir_config_or_logs(stack, catalog_repo, tmp_path, caplog) -> None:  # noqa: ANN001
    caplog.set_level(logging.DEBUG)  # GitPython logs every command line at DEBUG
    dest = tmp_path / "clone"
    repo = gitops.clone_branch(catalog_repo.url, "v4.17", dest, stack.git_token)
    (dest / "configs" / "x.json").write_text("{}")
    gitops.commit_all(repo, "m", "a", "a@b")
    gitops.push_branch(repo, "hygiene", catalog_repo.url, stack.git_token)
    gitops.delete_remote_branch(catalog_repo.url, "hygiene", stack.git_token)

    assert "git" in caplog.text.lower()  # the commands were logged...
    assert stack.git_token not in caplog.text  # ...without the token
    assert _grep(dest, stack.git_token) == []
    assert stack.git_token not in (dest / ".git" / "config").read_text()
    assert repo.remote("origin").url == catalog_repo.url
    assert _grep(stack.state_dir / "git", stack.git_token) == []


def test_refused_token_is_one_sentence_without_the_token(catalog_repo, tmp_path, caplog) -> None:  # noqa: ANN001
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-token-s3cr3t"
    with pytest.raises(PublishError) as err:
        gitops.clone_branch(catalog_repo.url, "v4.17", tmp_path / "clone", wrong)
    assert str(err.value) == (f"Error cloning remote repository for {catalog_repo.url} (branch v4.17): "
                              "authentication failed (the token was refused)")
    assert wrong not in caplog.text


def test_missing_branch_fails_clone(stack, catalog_repo, tmp_path) -> None:  # noqa: ANN001
    with pytest.raises(PublishError, match=r"^Error cloning remote repository for .*v4\.99.*not found"):
        gitops.clone_branch(catalog_repo.url, "v4.99", tmp_path / "clone", stack.git_token)


def test_rejected_push_raises(stack, catalog_repo, tmp_path) -> None:  # noqa: ANN001
    first = gitops.clone_branch(catalog_repo.url, "v4.17", tmp_path / "a", stack.git_token)
    second = gitops.clone_branch(catalog_repo.url, "v4.17", tmp_path / "b", stack.git_token)
    (tmp_path / "a" / "configs" / "a.json").write_text("{}")
    gitops.commit_all(first, "a", "a", "a@b")
    gitops.push_branch(first, "v4.17", catalog_repo.url, stack.git_token)
    (tmp_path / "b" / "configs" / "b.json").write_text("{}")
    sha_b = gitops.commit_all(second, "b", "b", "b@b")

    with pytest.raises(PublishError, match=r"^Failed to push branch v4\.17 to .*rejected"):
        gitops.push_branch(second, "v4.17", catalog_repo.url, stack.git_token)
    assert stack.git.refs(catalog_repo.project)["v4.17"] != sha_b

    gitops.push_branch(second, "v4.17", catalog_repo.url, stack.git_token, force=True)
    assert stack.git.refs(catalog_repo.project)["v4.17"] == sha_b


def test_nothing_to_commit_is_an_error(stack, catalog_repo, tmp_path) -> None:  # noqa: ANN001
    repo = gitops.clone_branch(catalog_repo.url, "v4.17", tmp_path / "clone", stack.git_token)
    with pytest.raises(PublishError, match="Nothing to commit"):
        gitops.commit_all(repo, "m", "a", "a@b")


def test_delete_remote_branch_is_idempotent(stack, catalog_repo, tmp_path) -> None:  # noqa: ANN001
    repo = gitops.clone_branch(catalog_repo.url, "v4.17", tmp_path / "clone", stack.git_token)
    gitops.push_branch(repo, "to-delete", catalog_repo.url, stack.git_token)
    assert "to-delete" in stack.git.refs(catalog_repo.project)

    gitops.delete_remote_branch(catalog_repo.url, "to-delete", stack.git_token)
    gitops.delete_remote_branch(catalog_repo.url, "to-delete", stack.git_token)

    assert "to-delete" not in stack.git.refs(catalog_repo.project)
    assert gitops.remote_branch_sha(catalog_repo.url, "to-delete", stack.git_token) is None


def test_token_name_value_form_is_accepted(stack, catalog_repo, tmp_path) -> None:  # noqa: ANN001
    """IIB stores tokens as `token_name:token_value`; both parts go to git as basic auth."""
    repo = gitops.clone_branch(catalog_repo.url, "v4.17", tmp_path / "clone", f"iib-bot:{stack.git_token}")
    assert isinstance(repo, git.Repo)
    assert gitops.credentials(f"iib-bot:{stack.git_token}") == ("iib-bot", stack.git_token)
    assert gitops.credentials("bare") == ("oauth2", "bare")


def test_large_push_goes_through_chunked_transfer(stack, catalog_repo, tmp_path) -> None:  # noqa: ANN001
    """Over git's 1 MiB post buffer the client streams the pack chunked; the server must de-chunk."""
    import os

    repo = gitops.clone_branch(catalog_repo.url, "v4.17", tmp_path / "clone", stack.git_token)
    (tmp_path / "clone" / "configs" / "big.bin").write_bytes(os.urandom(3 << 20))
    sha = gitops.commit_all(repo, "big", "a", "a@b")
    gitops.push_branch(repo, "big", catalog_repo.url, stack.git_token)
    assert gitops.remote_branch_sha(catalog_repo.url, "big", stack.git_token) == sha
    again = gitops.clone_branch(catalog_repo.url, "big", tmp_path / "again", stack.git_token)
    assert again.head.commit.hexsha == sha
    assert (tmp_path / "again" / "configs" / "big.bin").stat().st_size == 3 << 20


def test_a_mirror_clone_follows_the_remote_and_keeps_no_token(stack, catalog_repo, tmp_path) -> None:  # noqa: ANN001
    """Through the machine's mirror: the clone is the remote branch's tip, also after the branch moved
    (the mirror must not serve its old copy), shallow, with the remote as origin, and no token on disk."""
    mirror = tmp_path / "cache" / "git" / "m"
    first = gitops.clone_branch(catalog_repo.url, "v4.17", tmp_path / "a", stack.git_token, mirror=mirror)
    assert first.head.commit.hexsha == stack.git.refs(catalog_repo.project)["v4.17"]
    (tmp_path / "a" / "configs" / "moved.json").write_text("{}")
    moved = gitops.commit_all(first, "move the branch", "a", "a@b")
    gitops.push_branch(first, "v4.17", catalog_repo.url, stack.git_token)

    second = gitops.clone_branch(catalog_repo.url, "v4.17", tmp_path / "b", stack.git_token, mirror=mirror)
    assert second.head.commit.hexsha == moved == stack.git.refs(catalog_repo.project)["v4.17"]
    assert (tmp_path / "b" / "configs" / "moved.json").is_file()
    assert second.git.rev_parse("--is-shallow-repository") == "true"
    assert second.remote("origin").url == catalog_repo.url
    assert (mirror / "HEAD").is_file()
    assert _grep(tmp_path, stack.git_token) == []


@pytest.mark.parametrize("damage", ["objects gone", "not a repository"])
def test_a_broken_mirror_is_replaced(stack, catalog_repo, tmp_path, damage: str) -> None:  # noqa: ANN001
    mirror = tmp_path / "mirror"
    gitops.clone_branch(catalog_repo.url, "v4.17", tmp_path / "a", stack.git_token, mirror=mirror)
    if damage == "objects gone":
        for pack in (mirror / "objects").rglob("*"):
            if pack.is_file():
                pack.write_bytes(b"")
    else:
        (mirror / "HEAD").write_text("garbage\n")
    repo = gitops.clone_branch(catalog_repo.url, "v4.17", tmp_path / "b", stack.git_token, mirror=mirror)
    assert repo.head.commit.hexsha == stack.git.refs(catalog_repo.project)["v4.17"]
    assert (tmp_path / "b" / "configs" / "etcd" / "catalog.json").is_file()


def test_a_refused_token_through_the_mirror_is_the_same_sentence(catalog_repo, tmp_path) -> None:  # noqa: ANN001
    with pytest.raises(PublishError) as err:
        gitops.clone_branch(catalog_repo.url, "v4.17", tmp_path / "clone", "wrong-token", mirror=tmp_path / "m")
    assert str(err.value) == (f"Error cloning remote repository for {catalog_repo.url} (branch v4.17): "
                              "authentication failed (the token was refused)")
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("branch", ["v4.*", "v4.17:refs/heads/x", "v4.17/../x"])
def test_a_branch_that_is_not_plain_never_reaches_the_mirror(stack, catalog_repo, tmp_path, branch: str) -> None:  # noqa: ANN001
    """The branch comes from the index image's label: a glob or a second refspec half must not make the
    mirror fetch other branches; the plain clone reports the branch as missing."""
    mirror = tmp_path / "m"
    gitops.clone_branch(catalog_repo.url, "v4.17", tmp_path / "first", stack.git_token, mirror=mirror)
    refs = (mirror / "refs" / "heads").iterdir
    assert [p.name for p in refs()] == ["v4.17"]
    with pytest.raises(PublishError, match=r"^Error cloning remote repository for "):
        gitops.clone_branch(catalog_repo.url, branch, tmp_path / "clone", stack.git_token, mirror=mirror)
    assert [p.name for p in refs()] == ["v4.17"]  # untouched: a failed mirror clone would have removed it

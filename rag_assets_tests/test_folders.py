"""A folder source never follows a link: reading, listing, writing and deleting below a root
(lib.folders), on a real file system."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rag_assets.lib import folders
from rag_assets.lib.folders import NOT_FOLLOWED, NotFollowed, TooLarge


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """acme's and globex's folders, and a secret outside the root; links of every kind in acme's."""
    inbox = tmp_path / "inbox"
    (inbox / "acme" / "sub").mkdir(parents=True)
    (inbox / "globex").mkdir()
    (inbox / "acme" / "note.txt").write_text("acme's note")
    (inbox / "acme" / "sub" / "deep.txt").write_text("deeper")
    (inbox / "globex" / "payroll.txt").write_text("globex's payroll")
    (tmp_path / "secret.txt").write_text("outside the root")
    (inbox / "acme" / "steal.txt").symlink_to("../globex/payroll.txt")
    (inbox / "acme" / "outside.txt").symlink_to(tmp_path / "secret.txt")
    (inbox / "acme" / "env.txt").symlink_to("/proc/self/environ")
    (inbox / "acme" / "dangling.txt").symlink_to("nowhere.txt")
    (inbox / "acme" / "linked").symlink_to("../globex", target_is_directory=True)
    os.mkfifo(inbox / "acme" / "pipe.txt")
    return inbox


def test_a_plain_file_is_read_with_its_status(root):
    data, status = folders.read_file(str(root / "acme" / "note.txt"))
    assert data == b"acme's note" and status.st_size == len(data)


@pytest.mark.parametrize(
    "key", ["acme/steal.txt", "acme/outside.txt", "acme/env.txt", "acme/dangling.txt", "acme/linked/payroll.txt"]
)
def test_nothing_is_read_through_a_link(root, key):
    with pytest.raises(NotFollowed) as caught:
        folders.read_file(str(root / key))
    assert caught.value.reason == NOT_FOLLOWED


@pytest.mark.parametrize(
    "path, error",
    [
        ("acme/../globex/payroll.txt", NotFollowed),  # a `..` in a key is refused, not resolved
        ("acme/pipe.txt", OSError),  # a FIFO is refused at once, never waited on
        ("acme/sub", IsADirectoryError),
        ("acme/missing.txt", FileNotFoundError),
        ("missing/x.txt", FileNotFoundError),
        ("acme/note.txt/x", NotADirectoryError),
    ],
)
def test_what_is_not_a_regular_file_below_the_root_is_refused(root, path, error):
    with pytest.raises(error):
        folders.read_file(f"{root}/{path}")


def test_a_file_past_the_limit_is_refused_before_it_is_read(root):
    with pytest.raises(TooLarge) as caught:
        folders.read_file(str(root / "acme" / "note.txt"), max_bytes=5)
    assert (caught.value.size, caught.value.limit) == (11, 5)


def test_a_listing_never_enters_a_linked_folder_and_lists_linked_files_as_themselves(root):
    listed = dict(folders.list_files(str(root)))
    assert sorted(listed) == [
        "acme/dangling.txt", "acme/env.txt", "acme/note.txt", "acme/outside.txt", "acme/steal.txt", "acme/sub/deep.txt",
        "globex/payroll.txt",
    ]  # fmt: skip
    assert listed["acme/steal.txt"].st_size == len("../globex/payroll.txt")  # the link's own status


def test_a_name_that_is_not_utf8_is_skipped(root):
    os.mkdir(os.path.join(os.fsencode(root), b"acme", b"bad\xff"))
    (Path(os.fsdecode(os.path.join(os.fsencode(root), b"acme", b"bad\xff"))) / "x.txt").write_text("x")
    open(os.path.join(os.fsencode(root), b"acme", b"name\xfe.txt"), "w").close()
    assert not [k for k in dict(folders.list_files(str(root))) if "bad" in k or "name" in k]


def test_writes_never_go_through_a_link(root, tmp_path):
    with pytest.raises(NotFollowed):
        folders.write_file(str(root / "acme" / "linked" / "payroll.txt"), b"overwritten")
    assert (root / "globex" / "payroll.txt").read_text() == "globex's payroll"
    # A link at the name itself is replaced by the file, its target untouched.
    folders.write_file(str(root / "acme" / "outside.txt"), b"a thumbnail")
    assert (tmp_path / "secret.txt").read_text() == "outside the root"
    assert (
        not (root / "acme" / "outside.txt").is_symlink()
        and (root / "acme" / "outside.txt").read_bytes() == b"a thumbnail"
    )
    folders.write_file(str(root / ".rag-thumbnails" / "acme" / "x.png"), b"png")  # folders are made
    assert (root / ".rag-thumbnails" / "acme" / "x.png").read_bytes() == b"png"


def test_a_delete_removes_a_link_itself_and_never_goes_through_one(root):
    folders.remove_file(str(root / "acme" / "steal.txt"))
    assert not (root / "acme" / "steal.txt").exists() and (root / "globex" / "payroll.txt").exists()
    with pytest.raises(NotFollowed):
        folders.remove_file(str(root / "acme" / "linked" / "payroll.txt"))
    assert (root / "globex" / "payroll.txt").exists()
    folders.remove_file(str(root / "acme" / "missing.txt"))  # no error


def test_entry_status_is_the_links_own_and_none_through_a_link(root):
    assert folders.entry_status(str(root / "acme" / "steal.txt")) is not None
    assert folders.entry_status(str(root / "acme" / "linked" / "payroll.txt")) is None
    assert folders.entry_status(str(root / "acme" / "missing.txt")) is None


# Names whose order as whole keys differs from a folder-by-folder walk: "a" < "a-b" < "a.txt" < "a/..."
TRICKY = ["a/x.txt", "a-b/y.txt", "a.txt", "a/b/z.txt", "ab", "b", "é/1", "e/1", "日本/x", "😀", "a/b.txt", "a/b-c"]


def test_a_listing_is_in_key_order_and_goes_on_after_any_key(tmp_path):
    for key in TRICKY:
        (tmp_path / key).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / key).write_text(key)
    everything = [k for k, _ in folders.list_files(str(tmp_path))]
    assert everything == sorted(TRICKY)  # code point order of the whole key, as S3 lists
    for after in [*TRICKY, "", "a", "a/", "a/b", "a0", "z", "\U0010ffff"]:
        assert [k for k, _ in folders.list_files(str(tmp_path), after=after)] == [k for k in everything if k > after]


def test_a_folder_is_listed_a_page_at_a_time(tmp_path, monkeypatch):
    from rag_assets.resources import object_store
    from rag_assets.resources.object_store import ObjectStore

    for key in TRICKY:
        (tmp_path / key).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / key).write_text(key)
    monkeypatch.setattr(object_store, "LOCAL_PAGE", 5)
    pages, token = [], None
    while True:
        page, token = ObjectStore().list_page(str(tmp_path), token)
        pages.append([o.key for o in page])
        if token is None:
            break
    assert [len(p) for p in pages] == [5, 5, 2] and [k for p in pages for k in p] == sorted(TRICKY)

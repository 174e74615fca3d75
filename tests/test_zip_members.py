"""Zip archives received from others are read within limits: declared sizes are checked before anything is
decompressed, and a member whose data would inflate past its declared size is refused, not read."""

from __future__ import annotations

import struct
import zipfile

import pytest

from rec_gym.storage import check_zip_sizes, read_zip_member


def zip_bomb(path, megabytes: int) -> None:
    """A member ``data`` of ``megabytes`` MB of zeros (it compresses about a thousand to one)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive, archive.open("data", "w") as member:
        chunk = b"\0" * (1 << 20)
        for _ in range(megabytes):
            member.write(chunk)


def test_a_member_within_its_limit_is_read_and_a_missing_one_is_named(tmp_path):
    with zipfile.ZipFile(tmp_path / "model.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("data", b'{"n_steps": 128}')
    assert read_zip_member(tmp_path / "model.zip", "data", 100) == b'{"n_steps": 128}'
    with pytest.raises(ValueError, match=r"model.zip: no member 'policy.pth'"):
        read_zip_member(tmp_path / "model.zip", "policy.pth", 100)
    (tmp_path / "text.zip").write_text("not a zip")
    with pytest.raises(ValueError, match=r"text.zip: not a readable zip archive \(BadZipFile"):
        read_zip_member(tmp_path / "text.zip", "data", 100)


def test_a_zip_bomb_is_refused_by_its_declared_size_before_decompressing(tmp_path):
    zip_bomb(tmp_path / "model.zip", 64)
    assert (tmp_path / "model.zip").stat().st_size < 1 << 20
    with pytest.raises(ValueError) as info:
        read_zip_member(tmp_path / "model.zip", "data", 1 << 20)
    assert "member 'data' declares 67,108,864 bytes, more than its limit of 1,048,576" in str(info.value)
    with pytest.raises(ValueError, match="member 'data' declares 67,108,864 bytes"):
        check_zip_sizes(tmp_path / "model.zip", max_member_bytes=1 << 20, max_total_bytes=1 << 24)
    with pytest.raises(ValueError, match="67,108,864 bytes in all, more than its limit of 1,000,000"):
        check_zip_sizes(tmp_path / "model.zip", max_member_bytes=1 << 30, max_total_bytes=1_000_000)


def test_a_member_that_lies_about_its_size_passes_the_size_check_but_is_refused_when_read(tmp_path):
    with zipfile.ZipFile(tmp_path / "model.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("data", b"\0" * 10_000_000)
    forged = bytearray((tmp_path / "model.zip").read_bytes())
    # The uncompressed size, in the member's local header and in the central directory, set to 100 bytes.
    struct.pack_into("<I", forged, forged.index(b"PK\x03\x04") + 22, 100)
    struct.pack_into("<I", forged, forged.index(b"PK\x01\x02") + 24, 100)
    (tmp_path / "model.zip").write_bytes(bytes(forged))
    check_zip_sizes(tmp_path / "model.zip", max_member_bytes=1_000, max_total_bytes=1_000)  # the lie passes here
    with pytest.raises(ValueError, match=r"model.zip: not a readable zip archive \(BadZipFile: Bad CRC-32"):
        read_zip_member(tmp_path / "model.zip", "data", 1_000)

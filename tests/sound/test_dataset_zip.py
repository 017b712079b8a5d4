"""Dataset zip import: the seed's rules, duplicates, corrupt files, zip slip and zip bombs."""

from __future__ import annotations

import stat
import zipfile
from pathlib import Path

import pytest

from tingyin.sound.dataset_zip import (
    DatasetZipError,
    ImportReport,
    Rejection,
    ZipBombDetected,
    ZipLimits,
    ZipMember,
    directory_writer,
    import_zip,
    scan_zip,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sound"


def clip_bytes(label: str, index: int) -> bytes:
    return sorted((FIXTURES / label).glob("*.flac"))[index].read_bytes()


def write_zip(path: Path, entries: dict[str, bytes], *, compression: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return path


def reasons(report: ImportReport) -> dict[str, str]:
    return {rejection.name: rejection.code for rejection in report.rejected}


def test_good_zip_imports_every_clip_by_content_hash(tmp_path: Path) -> None:
    entries = {f"dog_bark/{i}.flac": clip_bytes("dog_bark", i) for i in range(3)}
    entries |= {f"rain/{i}.flac": clip_bytes("rain", i) for i in range(2)}
    report = import_zip(write_zip(tmp_path / "d.zip", entries), directory_writer(tmp_path / "out"))
    assert report.class_counts == {"dog_bark": 3, "rain": 2}
    assert report.rejected == [] and report.duplicates == []
    for clip in report.accepted:
        stored = tmp_path / "out" / clip.file_name
        assert stored.read_bytes() == entries[clip.source_name]
        assert clip.file_name.startswith(clip.content_hash)
    # Fewer than 50 clips per class: the seed's advice becomes a warning for each class.
    assert len(report.warnings) == 2 and "50" in report.warnings[0]
    assert report.to_dict()["class_counts"] == {"dog_bark": 3, "rain": 2}


def test_single_wrapping_folder_is_looked_through(tmp_path: Path) -> None:
    entries = {
        "my_data/dog_bark/a.flac": clip_bytes("dog_bark", 0),
        "my_data/rain/b.flac": clip_bytes("rain", 0),
    }
    report = import_zip(write_zip(tmp_path / "d.zip", entries), directory_writer(tmp_path / "out"))
    assert report.class_counts == {"dog_bark": 1, "rain": 1}


def test_rule_violations_get_per_file_reasons(tmp_path: Path) -> None:
    entries = {
        "dog_bark/ok.flac": clip_bytes("dog_bark", 0),
        "狗叫/a.flac": clip_bytes("dog_bark", 1),
        "dog bark/b.flac": clip_bytes("dog_bark", 2),
        "rain/notes.txt": b"not audio",
        "rain/broken.wav": b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk",
        "rain/big.wav": b"\x01" * (64 * 1024 + 1),
        "loose.flac": clip_bytes("rain", 0),
        "rain/empty.mp3": b"",
    }
    report = import_zip(
        write_zip(tmp_path / "d.zip", entries, compression=zipfile.ZIP_STORED),
        directory_writer(tmp_path / "o"),
        limits=ZipLimits(max_file_bytes=64 * 1024),
    )
    codes = reasons(report)
    assert codes["狗叫/a.flac"] == "bad_class_name"
    assert codes["dog bark/b.flac"] == "bad_class_name"
    assert codes["rain/notes.txt"] == "unsupported_type"
    assert codes["rain/broken.wav"] == "corrupt_audio"
    assert codes["rain/big.wav"] == "file_too_large"
    assert codes["loose.flac"] == "no_class_folder"
    assert codes["rain/empty.mp3"] == "empty_file"
    assert [clip.source_name for clip in report.accepted] == ["dog_bark/ok.flac"]


def test_duplicates_are_counted_once_within_and_across_imports(tmp_path: Path) -> None:
    data = clip_bytes("rooster", 0)
    entries = {"rooster/a.flac": data, "rooster/copy.flac": data, "dog_bark/same.flac": data}
    report = import_zip(write_zip(tmp_path / "d.zip", entries), directory_writer(tmp_path / "out"))
    assert len(report.accepted) == 1 and len(report.duplicates) == 2
    assert {d.first_label for d in report.duplicates} == {"rooster"}
    again = import_zip(
        tmp_path / "d.zip",
        directory_writer(tmp_path / "out"),
        existing_hashes={c.content_hash for c in report.accepted},
    )
    assert again.accepted == [] and len(again.duplicates) == 3


def test_too_many_files_and_classes(tmp_path: Path) -> None:
    entries = {f"c{i}/x{i}.flac": clip_bytes("rain", i) for i in range(4)}
    report = import_zip(
        write_zip(tmp_path / "d.zip", entries),
        directory_writer(tmp_path / "out"),
        limits=ZipLimits(max_classes=2),
    )
    assert len(report.accepted) == 2
    assert sorted(reasons(report).values()) == ["too_many_classes", "too_many_classes"]
    report = import_zip(
        write_zip(tmp_path / "e.zip", entries),
        directory_writer(tmp_path / "out2"),
        limits=ZipLimits(max_files=3),
    )
    assert len(report.accepted) == 3 and list(reasons(report).values()) == ["too_many_files"]


def test_zip_slip_entries_are_refused_and_nothing_escapes(tmp_path: Path) -> None:
    path = tmp_path / "slip.zip"
    good = clip_bytes("rain", 0)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("rain/ok.flac", good)
        archive.writestr("../evil.wav", good)
        archive.writestr("rain/../../evil2.wav", good)
        archive.writestr("/etc/evil.wav", good)
        archive.writestr("C:/evil.wav", good)
        link = zipfile.ZipInfo("rain/link.wav")
        link.create_system = 3
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
    out = tmp_path / "deep" / "out"
    report = import_zip(path, directory_writer(out))
    codes = reasons(report)
    assert set(codes.values()) == {"unsafe_path"}
    assert len(codes) == 5
    assert [c.source_name for c in report.accepted] == ["rain/ok.flac"]
    assert not (tmp_path / "evil.wav").exists() and not (tmp_path / "deep" / "evil.wav").exists()
    assert sorted(p.name for p in out.iterdir()) == [report.accepted[0].file_name]


def test_zip_bomb_member_is_cut_off_while_streaming(tmp_path: Path) -> None:
    path = write_zip(
        tmp_path / "bomb.zip",
        {"rain/ok.flac": clip_bytes("rain", 0), "rain/bomb.wav": b"\x00" * (64 * 1024 * 1024)},
    )
    with zipfile.ZipFile(path) as archive:
        assert archive.getinfo("rain/bomb.wav").compress_size < 200_000
    items = list(scan_zip(path))
    bomb = [i for i in items if isinstance(i, Rejection)]
    assert len(bomb) == 1 and bomb[0].name == "rain/bomb.wav" and bomb[0].code == "file_too_large"
    assert [i.name for i in items if isinstance(i, ZipMember)] == ["rain/ok.flac"]
    # Under the file-size limit but inflating ~1000x: refused on the ratio, measured while inflating.
    small_bomb = write_zip(tmp_path / "small.zip", {"rain/bomb.wav": b"\x00" * (3 * 1024 * 1024)})
    (rejection,) = list(scan_zip(small_bomb, limits=ZipLimits(max_member_ratio=100)))
    assert isinstance(rejection, Rejection) and rejection.code == "zip_bomb"


def test_lying_header_does_not_bypass_limits(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "lie.zip", {"rain/bomb.wav": b"\x00" * (32 * 1024 * 1024)})
    data = bytearray(path.read_bytes())
    # Patch the uncompressed size in the local and central headers to 1000 bytes.
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("rain/bomb.wav")
        real = info.file_size
    needle = real.to_bytes(4, "little")
    count = 0
    position = data.find(needle)
    while position != -1:
        data[position : position + 4] = (1000).to_bytes(4, "little")
        count += 1
        position = data.find(needle, position + 4)
    assert count >= 2
    path.write_bytes(bytes(data))
    items = list(scan_zip(path))
    assert len(items) == 1 and isinstance(items[0], Rejection)
    assert items[0].code in {"zip_bomb", "file_too_large", "corrupt_entry"}


def test_total_inflation_limit_stops_the_archive(tmp_path: Path) -> None:
    entries = {f"rain/{i}.wav": bytes([i]) * (3 * 1024 * 1024) for i in range(4)}
    path = write_zip(tmp_path / "many.zip", entries)
    with pytest.raises(ZipBombDetected):
        list(
            scan_zip(
                path,
                limits=ZipLimits(max_total_uncompressed_bytes=5 * 1024 * 1024, max_member_ratio=1e9),
                validate=None,
            )
        )


def test_not_a_zip_and_oversized_zip(tmp_path: Path) -> None:
    junk = tmp_path / "x.zip"
    junk.write_bytes(b"this is not a zip")
    with pytest.raises(DatasetZipError):
        import_zip(junk, directory_writer(tmp_path / "out"))
    good = write_zip(tmp_path / "g.zip", {"rain/a.flac": clip_bytes("rain", 0)})
    with pytest.raises(DatasetZipError):
        list(scan_zip(good, limits=ZipLimits(max_zip_bytes=100)))

"""Tables as offices export them: CSV (UTF-8, UTF-8 with BOM, GBK/GB18030), XLSX and
old .xls, read one row at a time with bounded memory.

A department's or the national system's export is rarely a bare table: a title row
("XX市医疗保障局2026年11月…明细表"), a notes row (填报单位, 制表日期, 单位：元), headers
over two or three rows with merged parents (基金支付 over 统筹基金支付 / 大病保险支付 /
医疗救助支付), a 合计 row and a 制表人/审核人 footer. `open_table` finds the header row
(the one whose columns best match what the caller knows), flattens layered headers,
picks the sheet, and yields the data rows with their Excel row numbers, skipping
totals and footers (counted). The caller names the fields; this module knows nothing
of any service.

The value helpers (`excel_amount`, `excel_date`, `excel_id_text`) undo what Excel does
to amounts, dates and ID numbers. An XLSX is checked before it is parsed (entry sizes
and compression ratios: a 790 KB file can expand to hundreds of MB).
"""

from __future__ import annotations

import codecs
import csv
import io
import math
import re
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import IO, Any
from xml.parsers import expat

from starlette.datastructures import UploadFile
from starlette.requests import Request

from backstop.errors import Problem, invalid
from backstop.idnumber import fold_fullwidth

# --- problems ---------------------------------------------------------------------------


class SheetProblem(ValueError):
    """The file as a whole cannot be read. `status` is the HTTP answer (413 too large,
    415 a format we do not read, 422 unreadable), `code` an English code for programs,
    `message` English and `message_zh` Chinese for the data officer; `details` carries
    what helps fix it (the header candidates, the limit)."""

    def __init__(
        self,
        code: str,
        message: str,
        message_zh: str,
        *,
        status: int = 422,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.message_zh = message_zh
        self.status = status
        self.details = details or {}

    def problem(self) -> Problem:
        """The problem+json answer: `code`, `detail_zh` and the details beside `detail`."""
        return Problem(
            self.status,
            self.message,
            # The first missing field names the error's place, when fields are missing.
            errors=[
                {"loc": ["body", "file", *self.details.get("missing", [])[:1]], "msg": self.message}
            ],
            code=self.code,
            detail_zh=self.message_zh,
            **self.details,
        )


class CellProblem(ValueError):
    """One value cannot be read as what its column holds (`code`, English and Chinese)."""

    def __init__(self, code: str, message: str, message_zh: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.message_zh = message_zh


@dataclass(frozen=True)
class Limits:
    """Bounds of one upload. An XLSX entry may expand at most `max_entry_bytes` and
    `max_ratio` times its compressed size; the shared strings (which a reader holds in
    memory) at most `max_shared_strings_bytes`."""

    max_rows: int = 1_000_000
    max_columns: int = 200
    max_cell_chars: int = 128 * 1024
    max_entry_bytes: int = 1 << 30
    max_shared_strings_bytes: int = 64 << 20
    max_ratio: int = 100
    scan_rows: int = 30  # rows searched for the header


# --- formats ----------------------------------------------------------------------------

REFUSED_FORMATS = {
    ".et": "WPS 表格 (.et)",
    ".ods": "OpenDocument (.ods)",
    ".numbers": "Numbers (.numbers)",
    ".xlsb": "Excel binary (.xlsb)",
}
_OLE = b"\xd0\xcf\x11\xe0"


def file_format(head: bytes, filename: str | None, content_type: str | None) -> str:
    """`csv`, `xlsx` or `xls`, from the file's first bytes and then its name; a format we
    do not read is a 415 that says how to export instead."""
    name = (filename or "").lower()
    for suffix, label in REFUSED_FORMATS.items():
        if name.endswith(suffix):
            raise SheetProblem(
                "unsupported_format",
                f"{label} files are not read: save the sheet as .xlsx or .csv and send that",
                f"不支持 {label} 文件：请在表格软件中另存为 .xlsx 或 .csv 后再报送",
                status=415,
            )
    if head.startswith(b"PK\x03\x04"):
        return "xlsx"
    if head.startswith(_OLE) or name.endswith(".xls"):
        return "xls"
    ctype = (content_type or "").split(";")[0].strip().lower()
    if name.endswith((".csv", ".tsv", ".txt")) or ctype.startswith("text/") or "csv" in ctype:
        return "csv"
    raise SheetProblem(
        "unsupported_format",
        f"file {filename!r} ({ctype or 'no content type'}) is neither CSV, XLSX nor XLS",
        "无法识别的文件格式：请报送 .xlsx、.xls 或 .csv 文件",
        status=415,
    )


def file_upload_body(description: str) -> dict[str, Any]:
    """OpenAPI `openapi_extra` for a route that reads one file from multipart/form-data
    (its body is read by `form_file`, not declared as a parameter)."""
    schema = {
        "type": "object",
        "required": ["file"],
        "properties": {"file": {"type": "string", "format": "binary", "description": description}},
    }
    return {
        "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}
    }


async def form_file(request: Request, *, max_bytes: int, max_fields: int = 10) -> UploadFile:
    """The `file` of a multipart/form-data request: 415 for another content type, 413 past
    `max_bytes` (by the declared length before the body is read, then by the file's own
    size), 422 without a file."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise Problem(
            415,
            "send the file as multipart/form-data in the field `file`",
            errors=[{"loc": ["body", "file"], "msg": "expected multipart/form-data"}],
        )
    too_large = Problem(
        413,
        f"file: larger than {max_bytes // (1024 * 1024)} MB",
        errors=[{"loc": ["body", "file"], "msg": "file too large"}],
    )
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > max_bytes:
        raise too_large
    form = await request.form(max_files=1, max_fields=max_fields)
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise invalid(["body", "file"], "a file is required")
    if upload.size is not None and upload.size > max_bytes:
        raise too_large
    return upload


def upload_format(upload: UploadFile) -> str:
    """`file_format` of an uploaded file (its first bytes read, the file left at its
    start), a refusal raised as its problem+json."""
    upload.file.seek(0)
    head = upload.file.read(8)
    upload.file.seek(0)
    try:
        return file_format(head, upload.filename, upload.content_type)
    except SheetProblem as exc:
        raise exc.problem() from None


def check_xlsx(file: IO[bytes], limits: Limits) -> None:
    """Refuse a workbook whose entries would expand past the limits, before any XML of
    it is parsed (a zip's directory states each entry's sizes; the reader that follows
    stops at the stated size, so a lying directory cannot expand further)."""
    file.seek(0)
    try:
        with zipfile.ZipFile(file) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError):
        raise SheetProblem(
            "unreadable_workbook",
            "not a readable XLSX workbook (the zip container is damaged)",
            "无法读取的 XLSX 文件（文件已损坏）",
        ) from None
    total = 0
    for entry in entries:
        size = entry.file_size
        total += size
        cap = (
            limits.max_shared_strings_bytes
            if entry.filename.lower().endswith("sharedstrings.xml")
            else limits.max_entry_bytes
        )
        ratio = size / max(entry.compress_size, 1)
        if size > cap or (size > (1 << 20) and ratio > limits.max_ratio) or total > 4 * cap:
            raise SheetProblem(
                "workbook_too_large",
                f"the workbook's part {entry.filename} expands to {size} bytes"
                f" ({ratio:.0f} times its compressed size); the limits are {cap} bytes and"
                f" {limits.max_ratio} times: split the file or send it as CSV",
                "工作簿解压后过大（疑似压缩炸弹或超大文件）：请拆分文件或导出为 CSV 后报送",
                status=413,
                details={"entry": entry.filename, "size": size, "ratio": round(ratio)},
            )
    file.seek(0)


# --- encodings --------------------------------------------------------------------------

_SCAN = 1 << 20


def detect_encoding(file: IO[bytes]) -> str:
    """`utf-8-sig` with a BOM, `utf-8` when the whole file decodes as UTF-8, else
    `gb18030` (a superset of GBK and GB2312: what Chinese office software exports). A
    file that is none of them is a 422 that says so."""
    file.seek(0)
    head = file.read(4)
    if head.startswith(codecs.BOM_UTF8):
        file.seek(0)
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise SheetProblem(
            "unsupported_encoding",
            "the file is UTF-16 (Excel's 'Unicode text'): save it as 'CSV UTF-8' instead",
            "文件编码为 UTF-16（Excel 的“Unicode 文本”）：请另存为“CSV UTF-8”后报送",
        )
    for encoding in ("utf-8", "gb18030"):
        file.seek(0)
        decoder = codecs.getincrementaldecoder(encoding)()
        try:
            while chunk := file.read(_SCAN):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError as exc:
            if encoding == "gb18030":
                raise SheetProblem(
                    "unknown_encoding",
                    f"the file is neither UTF-8 nor GBK/GB18030 text ({exc.reason}):"
                    " save it as 'CSV UTF-8' or send the XLSX",
                    "文件既不是 UTF-8 也不是 GBK/GB18030 编码：请另存为“CSV UTF-8”或直接报送 XLSX",
                ) from None
            continue
        file.seek(0)
        return encoding
    raise AssertionError("unreachable")


# --- finding the table ------------------------------------------------------------------

# Rows before the header that are not the table (填报单位, 制表日期, 单位：元) and rows in or
# after it that are totals or signatures (合计, 制表人 …): skipped, counted.
_FOOTER = re.compile(
    r"^(合计|总计|小计|累计|制表|审核|负责人|填报|填表|单位负责人|主管|注[:：]|备注[:：]|说明[:：])"
)
_SPACES = re.compile(r"[\s\u3000]+")
_UNIT_SUFFIX = re.compile(r"[（(][^）)]*[）)]$")


def header_key(text: Any) -> str:
    """How a header is compared: `" 医疗总费用（元）"` → `"医疗总费用"`, English
    lower-cased, spaces, hyphens and the BOM dropped."""
    cleaned = str(text).replace("\ufeff", "").strip()
    cleaned = _UNIT_SUFFIX.sub("", cleaned).strip()
    return re.sub(r"[\s\-\u3000]+", "", cleaned.lower()).replace("__", "_")


_FOOTER_FIRST = frozenset("合总小累制审负填单主注备说")


_DATA, _BLANK, _TOTALS = 0, 1, 2


def row_kind(values: list[Any]) -> int:
    """`_TOTALS` for a totals, signature or notes row (its first non-empty cell starts
    with 合计, 总计, 小计, 制表人, 审核人, 负责人, 填报 …), `_BLANK` for an empty one, else
    `_DATA`. One pass to the first non-empty cell: this runs on every row of a file."""
    for value in values:
        if value is None or value == "":
            continue
        if type(value) is not str:
            return _DATA
        text = value.lstrip()
        if not text:
            continue
        if text[0] in _FOOTER_FIRST and _FOOTER.match(_SPACES.sub("", text)) is not None:
            return _TOTALS
        return _DATA
    return _BLANK


def _blank_row(values: list[Any]) -> bool:
    return row_kind(values) == _BLANK


@dataclass
class Candidate:
    """A header row considered: where, how deep, what it matched and what it did not."""

    row: int  # Excel row number of its first line
    depth: int  # lines the header spans
    headers: list[str]
    fields: dict[int, str]
    missing: list[str]

    def describe(self) -> dict[str, Any]:
        return {
            "row": self.row,
            "rows": self.depth,
            "matched": {self.headers[i]: f for i, f in self.fields.items()},
            "unmatched_headers": [
                h for i, h in enumerate(self.headers) if h and i not in self.fields
            ],
            "missing_fields": self.missing,
        }


def flatten_header(lines: list[list[Any]]) -> list[list[str]]:
    """Each column's header parts, top to bottom. A merged parent cell is written only
    in its first column: it is carried right over the empty cells after it (in every
    line but the last), so 基金支付 heads each of its leaves."""
    width = max((len(line) for line in lines), default=0)
    parts: list[list[str]] = [[] for _ in range(width)]
    for depth, line in enumerate(lines):
        carried = ""
        for i in range(width):
            value = line[i] if i < len(line) else None
            text = "" if value is None else _SPACES.sub("", str(value))
            if text:
                carried = text
            elif depth < len(lines) - 1 and any(
                i < len(below) and below[i] not in (None, "") for below in lines[depth + 1 :]
            ):
                text = carried  # under a merged parent
            if text and (not parts[i] or parts[i][-1] != text):
                parts[i].append(text)
    return parts


def match_columns(
    parts: list[list[str]], match: Callable[[str], str | None]
) -> tuple[list[str], dict[int, str]]:
    """Each column's header as written (parts joined with "/") and the field of each
    matched column. The most specific part wins: the leaf, then parent and leaf written
    together (费用 / 总额 → 费用总额), then the parents; a field is taken once."""
    headers = ["/".join(p) for p in parts]
    fields: dict[int, str] = {}
    taken: set[str] = set()
    for i, column in enumerate(parts):
        tries = [column[-1]] if column else []
        tries += ["".join(column[k:]) for k in range(len(column) - 2, -1, -1)]
        tries += list(reversed(column[:-1]))
        for text in tries:
            found = match(text)
            if found is not None and found not in taken:
                fields[i] = found
                taken.add(found)
                break
    return headers, fields


def find_header(
    lines: list[list[Any]],
    first_row: int,
    match: Callable[[str], str | None],
    missing: Callable[[set[str]], list[str]],
    *,
    header_row: int | None = None,
    header_rows: int | None = None,
) -> tuple[Candidate, list[Candidate]]:
    """The best header among `lines` (the first rows of a sheet, `first_row` the Excel
    number of the first): the most fields matched, then nothing required missing, then
    the shallowest, then the most headers written. `header_row`/`header_rows` (a mapping profile's hints) fix it."""
    candidates: list[Candidate] = []
    starts = [header_row - first_row] if header_row is not None else list(range(len(lines)))
    depths = [header_rows] if header_rows else [1, 2, 3]
    for start in starts:
        if start < 0 or start >= len(lines) or _blank_row(lines[start]):
            continue
        for depth in depths:
            block = lines[start : start + depth]
            if len(block) < depth:
                break
            headers, fields = match_columns(flatten_header(block), match)
            candidates.append(
                Candidate(start + first_row, depth, headers, fields, missing(set(fields.values())))
            )
    # Most fields matched; then nothing missing; then the shallowest; then (for the
    # closest candidates of a header nobody knows) the row with most headers written.
    ranked = sorted(
        candidates,
        key=lambda c: (-len(c.fields), bool(c.missing), c.depth, -sum(map(bool, c.headers)), c.row),
    )
    if not ranked:
        raise SheetProblem(
            "empty_file", "the file has no rows", "文件没有任何数据行", details={"candidates": []}
        )
    return ranked[0], ranked


@dataclass
class Table:
    """An opened table: where its header is, what each column maps to, and its data rows
    as (Excel row number, values). `skipped` counts totals/footer rows met so far."""

    format: str
    encoding: str | None
    sheet: str | None
    sheets: list[str]
    header: Candidate
    rows: Iterator[tuple[int, list[Any]]] = field(repr=False)
    skipped: int = 0

    @property
    def headers(self) -> list[str]:
        return self.header.headers

    @property
    def fields(self) -> dict[int, str]:
        return self.header.fields


def _data_rows(
    table: Table, rows: Iterator[list[Any]], next_row: int, limits: Limits
) -> Iterator[tuple[int, list[Any]]]:
    number = next_row - 1
    for values in rows:
        number += 1
        if number > limits.max_rows:
            raise SheetProblem(
                "too_many_rows",
                f"the sheet has more than {limits.max_rows} rows: split it",
                f"数据超过 {limits.max_rows} 行：请拆分后报送",
                status=413,
            )
        kind = row_kind(values)
        if kind == _DATA:
            yield number, values
        elif kind == _TOTALS:
            table.skipped += 1


def _refuse_header(best: Candidate, ranked: list[Candidate], sheet: str | None) -> SheetProblem:
    shown = [c.describe() for c in ranked[:3]]
    where = f" in sheet {sheet!r}" if sheet else ""
    return SheetProblem(
        "header_not_found",
        f"no header row{where} holds the required columns; the closest is row {best.row}"
        f" (missing {', '.join(best.missing)}; headers not recognised:"
        f" {', '.join(shown[0]['unmatched_headers']) or 'none'}). Rename the columns, or"
        " ask the county to add them to this source's mapping profile",
        f"未找到表头行{('（工作表 ' + sheet + '）') if sheet else ''}：最接近的是第 {best.row} 行，"
        f"缺少字段 {', '.join(best.missing)}；可修改列名，或请县级在映射配置中添加对应关系",
        details={"sheet": sheet, "missing": best.missing, "candidates": shown},
    )


def open_table(
    file: IO[bytes],
    fmt: str,
    match: Callable[[str], str | None],
    missing: Callable[[set[str]], list[str]],
    *,
    limits: Limits | None = None,
    sheet: str | None = None,
    header_row: int | None = None,
    header_rows: int | None = None,
) -> Table:
    """Open `file` (`fmt` from `file_format`) and find its table: on `sheet` if given (a
    name or a 1-based number), else on the sheet whose header matches best. `match` maps
    one header text to a field (None: not known), `missing` lists the required fields a
    set of matched fields lacks. Raises SheetProblem when no header row has them all."""
    limits = limits or Limits()
    if fmt == "csv":
        return _csv_table(file, match, missing, limits, header_row, header_rows)
    sheets = _xlsx_sheets(file, limits) if fmt == "xlsx" else _xls_sheets(file)
    names = [name for name, _ in sheets]
    chosen = sheets
    if sheet:
        chosen = [
            s
            for number, s in enumerate(sheets, 1)
            if s[0] == sheet or (sheet.isdigit() and int(sheet) == number)
        ]
        if not chosen:
            raise SheetProblem(
                "sheet_not_found",
                f"no sheet {sheet!r}; the workbook has {', '.join(names)}",
                f"工作簿中没有名为 {sheet} 的工作表；现有：{'、'.join(names)}",
                details={"sheets": names},
            )
    best: tuple[Candidate, list[Candidate], str, Callable[[], Iterator[list[Any]]]] | None = None
    for name, opener in chosen:
        rows = opener()
        head = [list(r) for _, r in zip(range(limits.scan_rows), rows, strict=False)]
        if not head:
            continue
        found, ranked = find_header(
            head, 1, match, missing, header_row=header_row, header_rows=header_rows
        )
        if best is None or (len(found.fields), not found.missing) > (
            len(best[0].fields),
            not best[0].missing,
        ):
            best = (found, ranked, name, opener)
    if best is None:
        raise SheetProblem("empty_file", "the workbook has no rows", "工作簿没有任何数据行")
    found, ranked, name, opener = best
    if found.missing:
        raise _refuse_header(found, ranked, name if len(sheets) > 1 else None)
    rows = opener()
    for _ in range(found.row + found.depth - 1):
        next(rows, None)
    table = Table(fmt, None, name, names, found, iter(()))
    table.rows = _data_rows(table, rows, found.row + found.depth, limits)
    return table


def _csv_table(
    file: IO[bytes],
    match: Callable[[str], str | None],
    missing: Callable[[set[str]], list[str]],
    limits: Limits,
    header_row: int | None,
    header_rows: int | None,
) -> Table:
    encoding = detect_encoding(file)
    text = io.TextIOWrapper(file, encoding=encoding, errors="strict", newline="")
    sample = text.read(64 * 1024)
    text.seek(0)
    lines = sample.splitlines()[: limits.scan_rows] or [""]
    # The delimiter of the widest of the first lines (a title row has none).
    widest = max(lines, key=lambda s: max(s.count("\t"), s.count(",")))
    delimiter = "\t" if widest.count("\t") > widest.count(",") else ","
    reader = _bounded_csv(text, delimiter, limits)
    head: list[list[Any]] = []
    for row in reader:
        head.append(row)
        if len(head) >= limits.scan_rows:
            break
    if not head or all(_blank_row(r) for r in head):
        raise SheetProblem("empty_file", "the file is empty", "文件为空")
    found, ranked = find_header(
        head, 1, match, missing, header_row=header_row, header_rows=header_rows
    )
    if found.missing:
        raise _refuse_header(found, ranked, None)
    text.seek(0)
    reader = _bounded_csv(text, delimiter, limits)
    for _ in range(found.row + found.depth - 1):
        next(reader, None)
    table = Table("csv", encoding, None, [], found, iter(()))
    table.rows = _data_rows(table, _detaching(reader, text), found.row + found.depth, limits)
    return table


def _detaching(rows: Iterator[list[Any]], text: io.TextIOWrapper) -> Iterator[list[Any]]:
    """The rows, then the text wrapper detached (closing it would close the upload)."""
    try:
        yield from rows
    finally:
        text.detach()


def _bounded_csv(text: io.TextIOWrapper, delimiter: str, limits: Limits) -> Iterator[list[Any]]:
    """csv rows with a cell and a width limit: over them is a 413/422 naming the row,
    never the csv module's error (nor a 500)."""
    reader = csv.reader(text, delimiter=delimiter)
    width = limits.max_columns
    try:
        for row in reader:
            yield row if len(row) <= width else row[:width]
    except csv.Error as exc:
        raise SheetProblem(
            "cell_too_large" if "field larger" in str(exc) else "malformed_csv",
            f"line {reader.line_num}: {exc}; a cell may hold at most"
            f" {limits.max_cell_chars} characters",
            f"第 {reader.line_num} 行无法读取（单元格过长或引号不配对）",
            details={"line": reader.line_num},
        ) from None
    except UnicodeDecodeError as exc:
        raise SheetProblem(
            "unknown_encoding",
            f"line {reader.line_num + 1}: not {text.encoding} text ({exc.reason})",
            f"第 {reader.line_num + 1} 行编码错误：请另存为“CSV UTF-8”",
        ) from None


# csv's own limit is the process-wide field_size_limit (131072 by default): kept, and
# checked above so that a longer cell is a 4xx naming its line.
csv.field_size_limit(Limits().max_cell_chars)


def _xlsx_sheets(
    file: IO[bytes], limits: Limits
) -> list[tuple[str, Callable[[], Iterator[list[Any]]]]]:
    """The sheets of a checked workbook, each read row by row with expat from the zip
    entry as it inflates (a reader of our own: openpyxl's read-only mode costs about five
    times the CPU per cell, building a cell object each). Shared strings are held (their
    size is bounded by `check_xlsx`); a date-formatted number becomes a datetime."""
    check_xlsx(file, limits)
    try:
        archive = zipfile.ZipFile(file)
        names = set(archive.namelist())
        shared = _shared_strings(archive) if "xl/sharedStrings.xml" in names else []
        date_styles = _date_styles(archive) if "xl/styles.xml" in names else frozenset()
        targets = _sheet_targets(archive)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError, expat.ExpatError) as exc:
        raise SheetProblem(
            "unreadable_workbook",
            f"not a readable XLSX workbook: {type(exc).__name__}",
            "无法读取的 XLSX 文件",
        ) from None

    def opener(path: str) -> Callable[[], Iterator[list[Any]]]:
        def rows() -> Iterator[list[Any]]:
            with archive.open(path) as stream:
                yield from _sheet_rows(stream, shared, date_styles, limits.max_columns)

        return rows

    return [(name, opener(path)) for name, path in targets if path in names]


def _local(name: str) -> str:
    return name[name.find(":") + 1 :]


def _parse(stream: IO[bytes], start: Any, end: Any, text: Any) -> Iterator[None]:
    """Feed `stream` to expat with the given handlers, yielding after each block."""
    parser = expat.ParserCreate()
    parser.buffer_text = True
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    while block := stream.read(1 << 16):
        parser.Parse(block, False)
        yield None
    parser.Parse(b"", True)
    yield None


def _shared_strings(archive: zipfile.ZipFile) -> list[str]:
    strings: list[str] = []
    parts: list[str] = []
    state: dict[str, Any] = {"text": False, "phonetic": 0}

    def start(name: str, attrs: dict[str, str]) -> None:
        local = _local(name)
        if local == "t" and not state["phonetic"]:
            state["text"] = True
        elif local == "rPh":  # a phonetic guide (ruby), not the cell's text
            state["phonetic"] += 1

    def end(name: str) -> None:
        local = _local(name)
        if local == "t":
            state["text"] = False
        elif local == "rPh":
            state["phonetic"] -= 1
        elif local == "si":
            strings.append("".join(parts))
            parts.clear()

    def text(data: str) -> None:
        if state["text"]:
            parts.append(data)

    with archive.open("xl/sharedStrings.xml") as stream:
        for _ in _parse(stream, start, end, text):
            pass
    return strings


def _date_styles(archive: zipfile.ZipFile) -> frozenset[int]:
    """The cell style indexes (`s`) whose number format shows a date."""
    from openpyxl.styles.numbers import BUILTIN_FORMATS, is_date_format

    formats: dict[int, str] = dict(BUILTIN_FORMATS)
    styles: list[int] = []
    depth = {"xfs": False}

    def start(name: str, attrs: dict[str, str]) -> None:
        local = _local(name)
        if local == "numFmt":
            formats[int(attrs.get("numFmtId", "0"))] = attrs.get("formatCode", "")
        elif local == "cellXfs":
            depth["xfs"] = True
        elif local == "xf" and depth["xfs"]:
            styles.append(int(attrs.get("numFmtId", "0")))

    def end(name: str) -> None:
        if _local(name) == "cellXfs":
            depth["xfs"] = False

    with archive.open("xl/styles.xml") as stream:
        for _ in _parse(stream, start, end, lambda data: None):
            pass
    # 27-36 and 50-58 are the CJK locales' built-in date formats (年月日).
    cjk = set(range(27, 37)) | set(range(50, 59))
    return frozenset(
        i for i, f in enumerate(styles) if f in cjk or is_date_format(formats.get(f, "General"))
    )


def _sheet_targets(archive: zipfile.ZipFile) -> list[tuple[str, str]]:
    """(sheet name, zip path) in workbook order."""
    relations: dict[str, str] = {}
    sheets: list[tuple[str, str]] = []

    def rel(name: str, attrs: dict[str, str]) -> None:
        if _local(name) == "Relationship":
            target = attrs.get("Target", "")
            relations[attrs.get("Id", "")] = (
                target.lstrip("/") if target.startswith("/") else f"xl/{target}"
            )

    def sheet(name: str, attrs: dict[str, str]) -> None:
        if _local(name) == "sheet":
            rid = next((v for k, v in attrs.items() if _local(k) == "id"), "")
            sheets.append((attrs.get("name", ""), rid))

    for path, start in (("xl/_rels/workbook.xml.rels", rel), ("xl/workbook.xml", sheet)):
        with archive.open(path) as stream:
            for _ in _parse(stream, start, lambda name: None, lambda data: None):
                pass
    return [(name, relations.get(rid, "")) for name, rid in sheets]


_EXCEL_EPOCH_DT = datetime(1899, 12, 30)


_COLUMNS: dict[str, int] = {}


def _column(ref: str) -> int:
    """`"AB12"` → 27 (0-based column of a cell reference); letters seen once are kept
    (a sheet has few columns and this runs for every cell)."""
    letters = ref.rstrip("0123456789")
    known = _COLUMNS.get(letters)
    if known is None:
        known = -1
        for ch in letters:
            known = (known + 1) * 26 + ord(ch) - 65
        if len(_COLUMNS) < 20_000:
            _COLUMNS[letters] = known
    return known


def _sheet_rows(
    stream: IO[bytes], shared: list[str], date_styles: frozenset[int], max_columns: int
) -> Iterator[list[Any]]:
    """A worksheet's rows as lists of values (None for empty cells), one per Excel row
    from row 1: rows the file leaves out come as empty lists, so positions stay Excel's.
    (The handlers keep their state in closure variables: they run five times a cell.)"""
    done: list[list[Any]] = []
    row: list[Any] = []
    parts: list[str] = []
    column, kind, style, collecting, at = 0, "n", -1, False, 0

    def start(name: str, attrs: dict[str, str]) -> None:
        nonlocal column, kind, style, collecting, at
        if ":" in name:
            name = _local(name)
        if name == "v" or name == "t":
            collecting = True
        elif name == "c":
            ref = attrs.get("r")
            column = _column(ref) if ref else len(row)
            kind = attrs.get("t", "n")
            number_style = attrs.get("s")
            style = int(number_style) if number_style else -1
            parts.clear()
        elif name == "row":
            number = attrs.get("r")
            target = int(number) if number else at + 1
            while at < target - 1:  # rows the file leaves out
                at += 1
                done.append([])
            at = target
            row.clear()

    def end(name: str) -> None:
        nonlocal collecting
        if ":" in name:
            name = _local(name)
        if name == "v" or name == "t":
            collecting = False
        elif name == "c":
            if column >= max_columns or not parts:
                return
            raw = parts[0] if len(parts) == 1 else "".join(parts)
            if kind == "inlineStr" or kind == "str":  # the common cases, without a call
                value: Any = raw
            elif kind == "s":
                value = shared[int(raw)]
            else:
                value = _cell_value(raw, kind, style, date_styles)
            if column >= len(row):
                row.extend([None] * (column - len(row) + 1))
            row[column] = value
        elif name == "row":
            done.append(row[:])

    def text(data: str) -> None:
        if collecting:
            parts.append(data)

    for _ in _parse(stream, start, end, text):
        if done:
            yield from done
            done.clear()


def _cell_value(raw: str, kind: Any, style: Any, date_styles: frozenset[int]) -> Any:
    """A number (a datetime when its style shows a date), a boolean, or text."""
    if kind == "n":
        if style in date_styles:
            return _EXCEL_EPOCH_DT + timedelta(days=float(raw))
        if "." in raw or "E" in raw or "e" in raw:
            return float(raw)
        return int(raw)
    if kind == "b":
        return raw == "1"
    if kind == "e":  # #N/A, #DIV/0!: no value
        return None
    return raw  # inlineStr, str (a formula's text), d (ISO date text)


def _xls_sheets(file: IO[bytes]) -> list[tuple[str, Callable[[], Iterator[list[Any]]]]]:
    """An old BIFF workbook (.xls), through xlrd. Such files hold at most 65,536 rows and
    are read whole (the upload limit bounds them); date cells become datetimes."""
    import xlrd

    file.seek(0)
    try:
        book = xlrd.open_workbook(file_contents=file.read(), on_demand=True)
    except (xlrd.XLRDError, OSError, ValueError, AssertionError, IndexError, KeyError) as exc:
        raise SheetProblem(
            "unreadable_workbook",
            f"not a readable .xls workbook: {exc}",
            "无法读取的 .xls 文件：请另存为 .xlsx 后报送",
        ) from None

    def opener(index: int) -> Callable[[], Iterator[list[Any]]]:
        def rows() -> Iterator[list[Any]]:
            ws = book.sheet_by_index(index)
            for r in range(ws.nrows):
                values: list[Any] = []
                for cell in ws.row(r):
                    if cell.ctype == xlrd.XL_CELL_DATE:
                        values.append(xlrd.xldate_as_datetime(cell.value, book.datemode))
                    elif cell.ctype in (xlrd.XL_CELL_EMPTY, xlrd.XL_CELL_BLANK):
                        values.append(None)
                    else:
                        values.append(cell.value)
                yield values

        return rows

    return [(name, opener(i)) for i, name in enumerate(book.sheet_names())]


# --- values as Excel leaves them --------------------------------------------------------

_AMOUNT_NOISE = re.compile(r"[,，\s¥￥元]")
_EXCEL_EPOCH = date(1899, 12, 30)  # serial 1 = 1900-01-01 after Lotus's leap-year bug
_CN_DATE = re.compile(r"^(\d{4})年(\d{1,2})月(\d{1,2})日?$")
_SEP_DATE = re.compile(r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})$")
_SCIENTIFIC = re.compile(r"^\d(\.\d+)?[eE]\+?\d+$")
_ID_NOISE = re.compile(r"[\s'‘’\"“”`\u3000]")


def excel_amount(value: Any) -> float:
    """An amount as written in a sheet: a number, `1,234.56`, `¥1234`, `1234元`, full-width
    digits. Raises CellProblem when it is none of them or not finite."""
    if isinstance(value, bool):
        raise CellProblem("not_a_number", "must be a number", "应为数字")
    if isinstance(value, int | float):
        number = float(value)
    else:
        text = _AMOUNT_NOISE.sub("", fold_fullwidth(str(value)).replace("．", "."))
        try:
            number = float(text)
        except ValueError:
            raise CellProblem(
                "not_a_number", f"must be a number, got {str(value)[:40]!r}", "应为数字"
            ) from None
    if not math.isfinite(number):
        raise CellProblem("not_a_number", "must be a finite number", "应为有限的数字")
    return number


def excel_date(value: Any) -> date:
    """A date as a sheet gives it: a date or datetime cell, an Excel serial number
    (46329), `2026-11-03`, `2026/11/3`, `2026.11.3`, `2026年11月3日`, `20261103`, with or
    without a time after it. Raises CellProblem otherwise."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not (10_000_000 <= value <= 99_991_231):  # not 20261103 typed as a number
            return _serial(float(value), value)
        value = str(int(value))
    text = fold_fullwidth(str(value)).strip()
    if len(text) > 10 and text[10] in " T":  # "2026-10-03 14:22:00"
        text = text[:10]
    try:
        if len(text) == 8 and text.isdigit():
            return date(int(text[:4]), int(text[4:6]), int(text[6:]))
        if 4 <= len(text) <= 7 and text.replace(".", "", 1).isdigit():
            return _serial(float(text), value)
        m = _SEP_DATE.match(text) or _CN_DATE.match(text)
        if m is not None:
            return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        raise CellProblem(
            "not_a_real_date", f"{text[:40]!r} is not a real date", "不是真实存在的日期"
        ) from None
    raise CellProblem(
        "not_a_date",
        f"must be a date (2026-11-03, 2026/11/3, 2026年11月3日 or 20261103), got {text[:40]!r}",
        "应为日期（如 2026-11-03、2026/11/3、2026年11月3日 或 20261103）",
    )


def _serial(number: float, original: Any) -> date:
    # Serials from 1 (1900) to 2958465 (9999-12-31); a day number is what a date cell
    # shows when its format was lost.
    if not (1 <= number < 2958466):
        raise CellProblem(
            "not_a_date",
            f"{str(original)[:40]!r} is not a date",
            "不是日期（数值超出 Excel 日期范围）",
        )
    return _EXCEL_EPOCH + timedelta(days=int(number))


def excel_id_text(value: Any) -> str:
    """An ID number's text as a sheet gives it: full-width digits folded, spaces, quotes
    and Excel's text apostrophe dropped, `x` made `X`. An ID number that Excel already
    turned into a number (`4.41881E+17`, or a float cell) lost its last digits: that is a
    CellProblem saying how to export the column as text."""
    if isinstance(value, float) or (
        isinstance(value, str) and _SCIENTIFIC.match(value.strip()) is not None
    ):
        raise CellProblem(
            "id_number_lost_digits",
            f"{str(value)[:20]!r}: Excel stored the ID number as a number and lost its last"
            " digits; format the column as Text (or export it with a leading ') and export"
            " the file again",
            "身份证号码被 Excel 存成了数字，后几位已丢失：请将该列设置为“文本”格式"
            "（或在号码前加英文单引号）后重新导出",
        )
    return _ID_NOISE.sub("", fold_fullwidth(str(value))).upper()

"""OpenAI batch files: the request lines read from ``IN.jsonl`` and the answer lines written.

A request line is ``{"custom_id", "method", "url", "body"}``; an answer line is ``{"id",
"custom_id", "response": {"status_code", "request_id", "body"}, "error"}``. A line whose request
failed keeps the server's status and error object in ``response`` and also names the error in
``error`` (``{"code", "message"}``), so a script can tell failures apart without reading bodies.

Problems with the file itself (a line that is not a JSON object, a missing or repeated
``custom_id``) are one sentence before anything runs; a bad request on a good line becomes an
error line and the rest go on.
"""

from __future__ import annotations

import hashlib
import json
import re
import stat
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from localpref import json_reading
from localpref.errors import LocalprefError
from localpref.request import lone_surrogate


class BatchFileError(LocalprefError):
    """A batch file that cannot be read as a whole (one sentence, nothing run)."""


@dataclass(frozen=True)
class BatchLine:
    """One request line: its place in the file (0-based), id, HTTP method, route and body."""

    index: int
    custom_id: str
    method: str = "POST"
    url: str = ""
    body: Any = field(default=None, compare=False)
    #: ``method`` or ``url`` where the line gave it as another JSON type than a string (its
    #: answer is an error line saying so), else None
    wrong_type: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The line as read (what a Ray actor receives)."""
        return {"index": self.index, "custom_id": self.custom_id, "method": self.method,
                "url": self.url, "body": self.body, "wrong_type": self.wrong_type}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BatchLine:
        return cls(data["index"], data["custom_id"], data["method"], data["url"], data["body"],
                   data.get("wrong_type"))


def parse_lines(text: str, name: str = "the batch file") -> list[BatchLine]:
    """Every request line of ``text`` (blank lines skipped); ``BatchFileError`` for a line that
    is not a JSON object with a non-empty string ``custom_id``, or an id used twice."""
    found: list[BatchLine] = []
    seen: dict[str, int] = {}
    # Lines end at "\n" only: JSON strings may hold U+2028 and other characters that
    # str.splitlines() would break at.
    for number, raw in enumerate(text.split("\n"), start=1):
        if not raw.strip():
            continue
        try:
            data = json_reading.loads(raw)
        except json_reading.JSONProblem as problem:
            if raw.lstrip().startswith("\ufeff"):  # files joined with cat: a BOM mid-file
                raise BatchFileError(f"Line {number} of {name} begins with a byte-order mark "
                                     "(U+FEFF), as a file saved with one does; remove it.") \
                    from None
            if problem.kind != json_reading.SYNTAX:  # valid JSON Python's reader refuses
                raise BatchFileError(f"Line {number} of {name} is not JSON localpref reads: "
                                     f"{problem.reason}.") from None
            raise BatchFileError(f"Line {number} of {name} is not valid JSON.") from None
        if not isinstance(data, dict):
            raise BatchFileError(f"Line {number} of {name} is not a JSON object.")
        custom_id = data.get("custom_id")
        if custom_id is not None and not isinstance(custom_id, str):
            raise BatchFileError(f"The custom_id on line {number} of {name} is "
                                 f"{json.dumps(custom_id)[:40]}, not a string; write it in "
                                 "quotes.")
        if not custom_id:
            raise BatchFileError(f"Line {number} of {name} has no custom_id (a non-empty "
                                 "string that names the request in the answers).")
        if lone_surrogate(custom_id) is not None:
            raise BatchFileError(f"The custom_id on line {number} of {name} is not valid "
                                 "Unicode text (it holds a lone surrogate).")
        if custom_id in seen:
            raise BatchFileError(f"The custom_id '{custom_id}' is on lines {seen[custom_id]} "
                                 f"and {number} of {name}; every request needs its own.")
        seen[custom_id] = number
        # null or empty is no value, as missing (a missing method is POST)
        method, url = data.get("method"), data.get("url")
        wrong_type = next((name for name, value in (("url", url), ("method", method))
                           if value is not None and not isinstance(value, str)), None)
        found.append(BatchLine(len(found), custom_id, "POST" if method in (None, "") else
                               str(method).upper(), "" if url is None else str(url),
                               data.get("body"), wrong_type))
    return found


#: What may part a preference text into several: ``concise,formal``, ``concise=1+formal=2``.
_PREFERENCE_PARTS = re.compile(r"[,+;]")


def lanes_bound(lines: list[BatchLine]) -> int:
    """At most how many lanes ``lines`` take if every one decodes at once, read from their
    bodies without the model (an upper bound; a line the server would refuse counts two).

    A request takes a base lane, one per preference, one for examples (``like``) and, with
    several preferences, one that combines them (``docs/steering.md``: n + 2 lanes): at most
    2 + preferences + examples. A line takes that for each of its choices (``n``, times the
    prompts of a text completion). The preferences are each item of the ``localpref`` object's
    list or weights, or each part of a text between commas, pluses or semicolons, there or in
    the model id after its first colon, whichever gives more."""
    return sum(_line_lanes(line.body) for line in lines)


def _line_lanes(body: Any) -> int:
    if not isinstance(body, dict):
        return 2
    options = body.get("localpref")
    options = options if isinstance(options, dict) else {}
    model = body.get("model")
    steering = model.partition(":")[2] if isinstance(model, str) else ""  # ID:PREFERENCE
    preferences = max(_preference_count(options.get("preference")),
                      _preference_count(unquote(steering) or None))
    examples = 1 if options.get("like") else 0
    n = body.get("n")
    prompt = body.get("prompt")
    choices = ((n if isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= 128 else 1)
               * (len(prompt) if isinstance(prompt, list) and prompt else 1))
    return choices * (2 + preferences + examples)


def _preference_count(preference: Any) -> int:
    if isinstance(preference, (list, dict)):
        return len(preference)
    if isinstance(preference, str):
        return 1 + len(_PREFERENCE_PARTS.findall(preference))
    return 0


def json_line(value: Any) -> str:
    """``value`` as one JSON line: UTF-8 as it is, escaped where a lone surrogate (in an
    echoed model name, say) could not be written."""
    text = json.dumps(value, ensure_ascii=False)
    return (text if lone_surrogate(text) is None else json.dumps(value)) + "\n"


def read_lines(path: Path) -> list[BatchLine]:
    """The request lines of the file at ``path`` (one sentence if it cannot be read): a
    regular file or a pipe (``<(...)``), never a device that reads forever (``/dev/zero``).
    A byte-order mark at its start is skipped."""
    try:
        if stat.S_ISCHR(path.stat().st_mode) or stat.S_ISBLK(path.stat().st_mode):
            raise BatchFileError(f"The batch file {path} is a device, not a file.")
        data = path.read_bytes()
    except FileNotFoundError:
        raise BatchFileError(f"There is no batch file at {path}.") from None
    except OSError as error:
        raise BatchFileError(f"Cannot read the batch file {path}: "
                             f"{error.strerror or error}.") from None
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):  # PowerShell 5's ">" writes UTF-16
        raise BatchFileError(f"The batch file {path} is UTF-16 text; save it as UTF-8.")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        number = data[:error.start].count(b"\n") + 1
        raise BatchFileError(f"Line {number} of {path} is not UTF-8 text (byte "
                             f"0x{data[error.start]:02x}); save the file as UTF-8.") from None
    return parse_lines(text, name=str(path))


#: ``req_`` and 48 hex digits: a request id that is the digest of its request line (answers
#: written before it existed have ``req_`` and a random 32).
DIGEST_ID = re.compile(r"req_[0-9a-f]{48}")


def request_id(line: BatchLine) -> str:
    """``response.request_id``: ``req_`` and the SHA-256 of the line's method, route and body
    (as canonical JSON), so that a resumed run can tell an answer to this very request from
    one to a line since edited, or to another file's line of the same ``custom_id``."""
    request = {"method": line.method.upper(), "url": line.url, "body": line.body}
    text = json.dumps(request, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return "req_" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:48]


def answer_line(line: BatchLine, status: int, body: dict[str, Any]) -> dict[str, Any]:
    """The answer line of one request: ``error`` names the error of a non-200 answer."""
    error = None
    if status != 200:
        details = body.get("error") or {}
        error = {"code": details.get("code"), "message": details.get("message")}
    return {
        "id": f"batch_req_{uuid.uuid4().hex}",
        "custom_id": line.custom_id,
        "response": {"status_code": status, "request_id": request_id(line), "body": body},
        "error": error,
    }


def completion_tokens(line: dict[str, Any]) -> int:
    """The tokens an answer line's completion wrote (0 for an error)."""
    body = (line.get("response") or {}).get("body") or {}
    usage = body.get("usage") if isinstance(body, dict) else None
    return int((usage or {}).get("completion_tokens", 0))


def failed(line: dict[str, Any]) -> bool:
    return (line.get("response") or {}).get("status_code") != 200

#!/usr/bin/env python3
"""Writes the seed inputs of the fuzz targets (fuzz/seeds/<target>/) and their libFuzzer
dictionaries (fuzz/dicts/) from what the project
already holds: the HL7 v2 and FHIR fixtures of tests/fixtures, and the JSON bodies written as
`json!({...})` literals in the tests and load tools (tests/it, src/app/bench, src/inbound).

The seeds are a starting point for `cargo fuzz run` (scripts/fuzz.sh passes them beside the
corpus); what is committed under fuzz/corpus/ is the minimised corpus the fuzzer grew from
them. The stored-event seeds come from the command bodies: `cargo test --test it
fuzz_replay::write_stored_event_seeds -- --ignored` decides them and writes their events.

Usage: scripts/fuzz-seed.py   (from anywhere; rewrites fuzz/seeds/ and fuzz/dicts/)
"""
import hashlib
import json
import pathlib
import re
import shutil

ROOT = pathlib.Path(__file__).resolve().parent.parent
SEEDS = ROOT / "fuzz" / "seeds"
START, END, CR = b"\x0b", b"\x1c", b"\x0d"


def write(target, data):
    if isinstance(data, str):
        data = data.encode()
    folder = SEEDS / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / hashlib.sha1(data).hexdigest()).write_bytes(data)


def hl7_messages():
    for path in sorted((ROOT / "tests/fixtures/hl7").glob("*.hl7")):
        lines = [line for line in path.read_text().splitlines() if line]
        yield "\r".join(lines) + "\r"


def json_literals():
    """The `json!({...})` literals of the Rust sources that are JSON once their Rust
    expressions are replaced by strings."""
    sources = list((ROOT / "tests/it").rglob("*.rs"))
    sources += list((ROOT / "src/app/bench").rglob("*.rs"))
    sources += list((ROOT / "src/inbound").rglob("*.rs"))
    for path in sources:
        text = path.read_text()
        for match in re.finditer(r"json!\(\s*([\[{])", text):
            start = match.start(1)
            depth, i, in_string = 0, start, False
            while i < len(text):
                c = text[i]
                if in_string:
                    if c == "\\":
                        i += 1
                    elif c == '"':
                        in_string = False
                elif c == '"':
                    in_string = True
                elif c in "[{(":
                    depth += 1
                elif c in "]})":
                    depth -= 1
                    if depth == 0:
                        break
                i += 1
            literal = text[start : i + 1]
            value = as_json(literal)
            if value is not None:
                yield value


PLACEHOLDERS = [
    (r"price|cost|amount", '"12.50"'),
    (r"quantity", "2"),
    (r"^(start|scheduled_for)$", '"2025-03-01T10:00:00Z"'),
    (r"^end$", '"2025-03-01T18:00:00Z"'),
    (r"^from$", '"2025-03-01"'),
    (r"^role$", '"nurse"'),
]


def as_json(literal):
    # format!("C{v}", ...) -> "C1"; a bare Rust expression in value position -> "X1".
    text = re.sub(r'format!\("([^"]*)"[^)]*\)', lambda m: json.dumps(re.sub(r"\{[^}]*\}", "1", m.group(1))), literal)
    text = re.sub(r"(?<=[:\[,])\s*(?![\"\[{\-\d]|true\b|false\b|null\b)[A-Za-z_][\w.:&]*(\([^()]*\))?(\.[\w]+(\([^()]*\))?)*\s*(?=[,}\]])", ' "X1"', text)
    # A placeholder where the key says what the value is: the command then decides.
    def typed(match):
        key = match.group(1)
        for pattern, value in PLACEHOLDERS:
            if re.search(pattern, key):
                return f'"{key}": {value}'
        return match.group(0)
    text = re.sub(r'"(\w+)":\s*"X1"', typed, text)
    text = re.sub(r",\s*([}\]])", r"\1", text)
    try:
        return json.loads(text)
    except ValueError:
        return None


def escape_dict(token):
    out = ""
    for ch in token:
        if ch == "\\":
            out += "\\\\"
        elif ch == '"':
            out += '\\"'
        elif 0x20 <= ord(ch) < 0x7F:
            out += ch
        else:
            out += "".join("\\x%02X" % b for b in ch.encode())
    return out


def write_dicts():
    """fuzz/dicts/json.dict (JSON syntax, the keys and short values of the JSON seeds, the
    event types, the stored-row fields) and fuzz/dicts/hl7.dict (delimiters, escapes, segment
    names, the message types careflow maps, MLLP's block characters)."""
    events = set()
    for path in ROOT.glob("aggregates/src/*/event.rs"):
        events.update(re.findall(r"^\s+([A-Z][A-Za-z]+) = [0-9]+,?$", path.read_text(), re.M))
    keys, strings = set(), set()

    def walk(value):
        if isinstance(value, dict):
            for key, item in value.items():
                keys.add(key)
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)
        elif isinstance(value, str) and len(value) <= 24 and re.fullmatch(r"[ -~]+", value):
            strings.add(value)

    for target in ["http_command_body", "fhir_resource", "fhir_bundle"]:
        for path in (SEEDS / target).iterdir():
            walk(json.loads(path.read_text()))
    tokens = ["{", "}", "[", "]", ",", ":", '"', "true", "false", "null", "-1", "0", "1.5",
              "1e99", "18446744073709551616", '"\\u0000"', '"\\ud800"', '""', "{}", "[]"]
    tokens += [f'"{key}"' for key in sorted(keys)]
    tokens += [f'"{event}"' for event in sorted(events)]
    tokens += [f'"{kind}-' for kind in ["patient_account", "encounter", "inventory_item",
                                       "purchase", "claim", "roster", "staffing"]]
    tokens += ['"stream_id"', '"event_type"', '"schema_version"', '"data"', '"metadata"',
               '"occurred_at"', '"2025-03-01T09:30:00Z"', '"12.50"', '"USD"']
    tokens += [f'"{value}"' for value in sorted(strings)]
    dicts = ROOT / "fuzz" / "dicts"
    dicts.mkdir(parents=True, exist_ok=True)
    lines = ["# Written by scripts/fuzz-seed.py: JSON syntax and the names careflow reads."]
    lines += [f'json_{i}="{escape_dict(t)}"' for i, t in enumerate(dict.fromkeys(tokens))]
    (dicts / "json.dict").write_text("\n".join(lines) + "\n")
    tokens = ["MSH|^~\\&|", "|", "^", "~", "\\", "&", "\r", "\n", "\\F\\", "\\S\\",
              "\\T\\", "\\R\\", "\\E\\", "\\.br\\", "\\X0D\\", "\\X1C\\", '""',
              "\x0b", "\x1c\r", "\x1c", "\ufeff"]
    tokens += ["\r" + segment + "|" for segment in ["MSH", "EVN", "PID", "PV1", "PV2", "NK1",
               "FT1", "MRG", "SCH", "RGS", "AIL", "AIG", "IN1", "GT1", "OBX", "DG1", "ZZZ"]]
    tokens += ["ADT^A01", "ADT^A03", "ADT^A04", "ADT^A08", "ADT^A11", "ADT^A40", "DFT^P03",
               "SIU^S12", "^^^GH^MR", "^MR", "20240105083000", "20240105", "125.50&USD", "2.5",
               "-0500"]
    lines = ["# Written by scripts/fuzz-seed.py: HL7 v2 delimiters, escapes and names."]
    lines += [f'hl7_{i}="{escape_dict(t)}"' for i, t in enumerate(tokens)]
    (dicts / "hl7.dict").write_text("\n".join(lines) + "\n")


def main():
    shutil.rmtree(SEEDS, ignore_errors=True)
    messages = list(hl7_messages())
    for message in messages:
        write("hl7_message", message)
        write("hl7_message", message.replace("\r", "\n"))
    # MLLP: cap byte, split byte, then a stream of frames with the noise senders send.
    for cap, split, message in zip([255, 40, 0, 255, 255, 7, 128, 255], range(8), messages):
        frame = START + message.encode() + END + CR
        write("mllp_codec", bytes([cap, split]) + frame)
        write("mllp_codec", bytes([cap, split]) + b"\r\n" + frame + frame + b"xx" + END + CR)
        write("mllp_codec", bytes([cap, split]) + START + b"MSH|cut" + frame + frame[:20])
    resources, bundles, bodies = [], [], []
    for path in sorted((ROOT / "tests/fixtures/fhir").glob("*.json")):
        resources.append(json.loads(path.read_text()))
    for value in json_literals():
        if not isinstance(value, dict):
            continue
        kind = value.get("resourceType")
        if kind == "Bundle":
            bundles.append(value)
        elif kind is not None:
            resources.append(value)
        elif isinstance(value.get("type"), str) and value["type"][:1].isupper():
            bodies.append(value)
    for resource in resources:
        write("fhir_resource", json.dumps(resource, indent=1))
    # One transaction Bundle of every fixture, and each fixture alone in one.
    fixtures = [r for r in resources if r.get("resourceType") != "Parameters"]
    entry = lambda r, i: {"fullUrl": f"urn:uuid:00000000-0000-4000-8000-{i:012d}", "resource": r,
                          "request": {"method": "POST", "url": r.get("resourceType", "")}}
    bundles.append({"resourceType": "Bundle", "type": "transaction",
                    "entry": [entry(r, i) for i, r in enumerate(fixtures)]})
    for i, resource in enumerate(fixtures):
        bundles.append({"resourceType": "Bundle", "type": "transaction", "entry": [entry(resource, i)]})
    for bundle in bundles:
        write("fhir_bundle", json.dumps(bundle, indent=1))
    for body in bodies:
        write("http_command_body", json.dumps(body))
    write_dicts()
    for target in sorted(p.name for p in SEEDS.iterdir()):
        print(f"{target}: {len(list((SEEDS / target).iterdir()))} seeds")


if __name__ == "__main__":
    main()

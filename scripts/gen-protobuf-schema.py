#!/usr/bin/env python3
"""Generate crates/kubesim/src/protobuf/schema.rs, the protobuf schema table kubesim decodes request bodies with.

kubectl and helm send built-in kinds as Kubernetes protobuf. kubesim turns such bodies into the JSON the JSON API
would have carried; this script writes the table that drives it: for every message reachable from the served kinds,
its fields with protobuf tag, JSON name, wire kind, cardinality, and two flags derived from the Go types.

Inputs (none of them becomes a dependency of the workspace; the generated table is the artifact):

  1. k8s-pb 0.9.0 (prost-generated Rust for every Kubernetes message): field tags, wire kinds, message references.
     It is in the cargo registry if any crate fetched it; otherwise:
         cargo new /tmp/x && cd /tmp/x && echo 'k8s-pb = "=0.9.0"' >> Cargo.toml && cargo fetch
     Default: ~/.cargo/registry/src/*/k8s-pb-0.9.0/src

  2. k8s-openapi 0.29 (already a workspace dependency): real JSON names (prost snake_case loses acronyms, e.g.
     `host_ipc` for `hostIPC`) from its serde code (`"podIP" => Field::Key_pod_ip`), and the served
     (apiVersion, kind) roots from its `impl crate::Resource` blocks.
     Default: ~/.cargo/registry/src/*/k8s-openapi-0.29.*/src/v1_35 (v1_35 matches k8s-pb 0.9.0's schema).

  3. The Go API sources (release-1.35), for what neither crate records:
       - which scalar fields are non-pointer `omitempty`: Go's protobuf marshaller always writes those (even "",
         0, false) where the JSON encoder omits them, so the decoder must drop their zero values (a pointer's
         explicit zero, like `replicas: 0` or `automountServiceAccountToken: false`, must stay);
       - which fields are embedded `json:",inline"` (e.g. Probe.handler, SecretKeySelector.localObjectReference):
         one protobuf field, but their members appear in the parent JSON object.
     The JSON names found there are also cross-checked against k8s-openapi's. Get them with:
         mkdir -p /tmp/k8s-go && cd /tmp/k8s-go && for r in api apimachinery apiextensions-apiserver; do
           git clone -q --depth 1 -b release-1.35 https://github.com/kubernetes/$r; done
     Default: /tmp/k8s-go (containing api/, apimachinery/, apiextensions-apiserver/)

Usage:
    python3 scripts/gen-protobuf-schema.py [--k8s-pb DIR] [--k8s-openapi DIR] [--go-src DIR] [--out FILE]

The output is deterministic; re-run after bumping an input and review the diff (new fields, new kinds).
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import sys
from collections import deque
from dataclasses import dataclass, field

# (module path shared by k8s-pb and k8s-openapi, Go package directory under --go-src).
PACKAGES = [
    ("api/core/v1", "api/core/v1"),
    ("api/apps/v1", "api/apps/v1"),
    ("api/batch/v1", "api/batch/v1"),
    ("api/rbac/v1", "api/rbac/v1"),
    ("api/authentication/v1", "api/authentication/v1"),
    ("api/authorization/v1", "api/authorization/v1"),
    ("api/coordination/v1", "api/coordination/v1"),
    ("api/networking/v1", "api/networking/v1"),
    ("api/policy/v1", "api/policy/v1"),
    ("api/events/v1", "api/events/v1"),
    ("api/autoscaling/v1", "api/autoscaling/v1"),
    ("api/discovery/v1", "api/discovery/v1"),
    ("apiextensions_apiserver/pkg/apis/apiextensions/v1", "apiextensions-apiserver/pkg/apis/apiextensions/v1"),
    ("apimachinery/pkg/apis/meta/v1", "apimachinery/pkg/apis/meta/v1"),
    ("apimachinery/pkg/runtime", "apimachinery/pkg/runtime"),
    ("apimachinery/pkg/util/intstr", "apimachinery/pkg/util/intstr"),
    ("apimachinery/pkg/api/resource", "apimachinery/pkg/api/resource"),
]

# Packages whose `impl crate::Resource` blocks are roots (meta's APIGroup & co. are discovery output, not bodies).
ROOT_PACKAGES = [p for p, _ in PACKAGES if p.startswith("api/") or p.startswith("apiextensions_apiserver/")]

META = "apimachinery/pkg/apis/meta/v1"
# Kinds registered into every group version by metav1.AddToGroupVersion (options sent as DELETE/POST bodies).
ANY_VERSION_KINDS = ["CreateOptions", "DeleteOptions", "GetOptions", "ListOptions", "PatchOptions", "UpdateOptions"]

# Messages whose JSON form is not an object of their fields (custom MarshalJSON in Go), keyed by (module, prost name).
SPECIAL = {
    (META, "Time"): "Time",
    (META, "MicroTime"): "MicroTime",
    (META, "Duration"): "Duration",
    (META, "FieldsV1"): "RawJson",
    (META, "Verbs"): "StringList",
    ("apimachinery/pkg/runtime", "RawExtension"): "RawJson",
    ("apimachinery/pkg/util/intstr", "IntOrString"): "IntOrString",
    ("apimachinery/pkg/api/resource", "Quantity"): "Quantity",
    ("apiextensions_apiserver/pkg/apis/apiextensions/v1", "Json"): "RawJson",
    ("apiextensions_apiserver/pkg/apis/apiextensions/v1", "JsonSchemaPropsOrArray"): "SchemaOrArray",
    ("apiextensions_apiserver/pkg/apis/apiextensions/v1", "JsonSchemaPropsOrBool"): "SchemaOrBool",
    ("apiextensions_apiserver/pkg/apis/apiextensions/v1", "JsonSchemaPropsOrStringArray"): "SchemaOrStringArray",
    # `type ExtraValue []string`: a message wrapper in protobuf, a plain array in JSON.
    ("api/authentication/v1", "ExtraValue"): "StringList",
    ("api/authorization/v1", "ExtraValue"): "StringList",
}

SCALARS = {"string": "Str", "bool": "Bool", "int32": "I32", "int64": "I64", "double": "F64", "bytes": "Bytes"}


def die(msg: str) -> None:
    print(f"gen-protobuf-schema: {msg}", file=sys.stderr)
    sys.exit(1)


def norm(name: str) -> str:
    """Comparable form of a field name: prost `non_resource_ur_ls` and JSON `nonResourceURLs` agree on it."""
    return re.sub(r"[^a-z0-9]", "", name.removeprefix("r#").lower())


def lower_camel(snake: str) -> str:
    parts = snake.removeprefix("r#").split("_")
    return parts[0] + "".join(p[:1].upper() + p[1:] for p in parts[1:])


# ---------------------------------------------------------------------------------------------------------------
# k8s-pb


@dataclass
class PbField:
    name: str  # prost field name (snake_case, without r#)
    tag: int
    kind: str  # Str/Bool/I32/I64/F64/Bytes/Message
    card: str  # One/List/Map
    ref: tuple[str, str] | None  # (module, message) for Message kinds / message map values


@dataclass
class PbMessage:
    module: str
    name: str
    fields: list[PbField] = field(default_factory=list)


WRAPPERS = ["::core::option::Option<", "::prost::alloc::vec::Vec<", "::prost::alloc::boxed::Box<"]


def resolve(module: str, rust_type: str) -> tuple[str, str]:
    """Resolves a prost type path (`super::super::...::ObjectMeta`, `PolicyRule`) against the file's module."""
    t = re.sub(r"\s+", "", rust_type)
    if t.startswith("::prost::alloc::collections::BTreeMap<"):
        t = t[len("::prost::alloc::collections::BTreeMap<") :]
        t = t.split(",", 1)[1]
    changed = True
    while changed:
        changed = False
        for w in WRAPPERS:
            if t.startswith(w):
                t, changed = t[len(w) :], True
    t = t.rstrip(">,")  # rustfmt may leave a trailing comma inside a broken-up `Option<\n ...,\n>`
    parts = t.split("::")
    mod = module.split("/")
    while parts and parts[0] == "super":
        parts.pop(0)
        mod.pop()
    name = parts.pop()
    return ("/".join(mod + parts) if parts else "/".join(mod)), name


def parse_pb_module(root: str, module: str) -> dict[str, PbMessage]:
    path = os.path.join(root, module, "mod.rs")
    try:
        text = open(path, encoding="utf-8").read()
    except OSError as e:
        die(f"cannot read {path}: {e}")
    text = "\n".join(line for line in text.splitlines() if not line.strip().startswith("//"))
    out: dict[str, PbMessage] = {}
    # `pub struct Patch {}` has no body: the alternation keeps it from swallowing the next struct.
    for m in re.finditer(r"pub struct (\w+) \{(?:\}|(.*?)\n\})", text, re.S):
        msg = PbMessage(module, m.group(1))
        for chunk in (m.group(2) or "").split("#[prost(")[1:]:
            attr, rest = chunk.split(")]", 1)
            fm = re.match(r"\s*pub\s+(r#)?(\w+)\s*:\s*(.*?),?\s*$", rest, re.S)
            if not fm:
                die(f"{module}::{msg.name}: cannot parse field after #[prost({attr})]")
            name, rtype = fm.group(2), fm.group(3)
            tag = int(re.search(r'tag = "(\d+)"', attr).group(1))
            mm = re.match(r'btree_map = "string, (\w+)"', attr)
            if mm:
                card, kind = "Map", mm.group(1)
            else:
                card = "List" if re.search(r"\brepeated\b", attr) else "One"
                kind = re.match(r"(\w+)", attr).group(1)
            if kind == "message":
                msg.fields.append(PbField(name, tag, "Message", card, resolve(module, rtype)))
            elif kind in SCALARS:
                msg.fields.append(PbField(name, tag, SCALARS[kind], card, None))
            else:
                die(f"{module}::{msg.name}.{name}: unsupported prost kind {attr!r}")
        out[msg.name] = msg
    return out


# ---------------------------------------------------------------------------------------------------------------
# k8s-openapi


def parse_openapi_module(root: str, module: str):
    """Returns ({struct: {norm(json): json}}, {lower struct: proper name}, [(apiVersion, kind, struct)])."""
    names: dict[str, dict[str, str]] = {}
    proper: dict[str, str] = {}
    roots = []
    for path in sorted(glob.glob(os.path.join(root, module, "*.rs"))):
        text = open(path, encoding="utf-8").read()
        sm = re.search(r"^pub struct (\w+)", text, re.M)
        if not sm:
            continue
        struct = sm.group(1)
        proper[struct.lower()] = struct
        keys = re.findall(r'^\s*"([^"]+)" => Field::Key_\w+,', text, re.M)
        names[struct] = {norm(k): k for k in keys if k not in ("apiVersion", "kind")}
        rm = re.search(
            r'impl crate::Resource for (\w+) \{\s*const API_VERSION: &\'static str = "([^"]*)";'
            r'.*?const KIND: &\'static str = "([^"]*)";',
            text,
            re.S,
        )
        if rm:
            roots.append((rm.group(2), rm.group(3), rm.group(1)))
    return names, proper, roots


# ---------------------------------------------------------------------------------------------------------------
# Go sources


@dataclass
class GoField:
    go_type: str
    json: str  # "" for inline
    options: set[str]


def parse_go_package(root: str, pkg: str) -> tuple[dict[str, dict[int, GoField]], dict[str, str]]:
    """Returns ({lower struct name: {protobuf tag: GoField}}, {lower struct name: Go name}) for the package."""
    d = os.path.join(root, pkg)
    files = [
        f
        for f in sorted(glob.glob(os.path.join(d, "*.go")))
        if not re.search(r"(_test|generated\.pb|generated\.protomessage\.pb|swagger_doc_generated)\.go$", f)
        and not os.path.basename(f).startswith("zz_generated")
    ]
    if not files:
        die(f"no Go sources in {d} (see the header for how to get them)")
    out: dict[str, dict[int, GoField]] = {}
    proper: dict[str, str] = {}
    for path in files:
        text = open(path, encoding="utf-8").read()
        for m in re.finditer(r"^type (\w+) struct \{\n(.*?)^\}", text, re.S | re.M):
            fields: dict[int, GoField] = {}
            for line in m.group(2).splitlines():
                line = line.strip()
                fm = re.match(r"^(?:(\w+)\s+)?(\S+)\s+`([^`]*)`", line)
                if not fm or line.startswith("//"):
                    continue
                tags = fm.group(3)
                pm = re.search(r'protobuf:"[a-z0-9]+,(\d+),', tags)
                if not pm:
                    continue
                jm = re.search(r'json:"([^"]*)"', tags)
                jparts = (jm.group(1) if jm else "").split(",")
                fields[int(pm.group(1))] = GoField(fm.group(2), jparts[0], set(jparts[1:]))
            out[m.group(1).lower()] = fields
            proper[m.group(1).lower()] = m.group(1)
    return out, proper


# ---------------------------------------------------------------------------------------------------------------
# Assembly


@dataclass
class OutField:
    tag: int
    json: str
    kind: str
    card: str
    ref: tuple[str, str] | None
    omit_zero: bool
    inline: bool


def main() -> None:
    home = os.path.expanduser("~")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k8s-pb", default=None, help="k8s-pb 0.9.0 src/ directory")
    ap.add_argument("--k8s-openapi", default=None, help="k8s-openapi 0.29 src/v1_35 directory")
    ap.add_argument("--go-src", default="/tmp/k8s-go", help="directory holding api/, apimachinery/, apiextensions-apiserver/")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "crates/kubesim/src/protobuf/schema.rs"))
    args = ap.parse_args()

    def find(pattern: str, what: str) -> str:
        hits = sorted(glob.glob(os.path.join(home, ".cargo/registry/src/*", pattern)))
        if not hits:
            die(f"{what} not found in the cargo registry (see the header for how to fetch it)")
        return hits[-1]

    pb_root = args.k8s_pb or find("k8s-pb-0.9.0/src", "k8s-pb 0.9.0")
    oa_root = args.k8s_openapi or find("k8s-openapi-0.29.*/src/v1_35", "k8s-openapi 0.29")

    pb: dict[tuple[str, str], PbMessage] = {}
    oa_names: dict[tuple[str, str], dict[str, str]] = {}
    oa_proper: dict[str, dict[str, str]] = {}
    go: dict[str, dict[str, dict[int, GoField]]] = {}
    go_proper: dict[str, dict[str, str]] = {}
    roots: list[tuple[str, str, tuple[str, str]]] = []
    for module, go_pkg in PACKAGES:
        for name, msg in parse_pb_module(pb_root, module).items():
            pb[(module, name)] = msg
        names, proper, rts = parse_openapi_module(oa_root, module)
        oa_proper[module] = proper
        for struct, fields in names.items():
            oa_names[(module, struct.lower())] = fields
        go[module], go_proper[module] = parse_go_package(args.go_src, go_pkg)
        if module in ROOT_PACKAGES:
            for api_version, kind, struct in rts:
                key = (module, next((n for (m, n) in pb if m == module and n.lower() == struct.lower()), ""))
                if key not in pb:
                    die(f"root {api_version} {kind}: no k8s-pb message {struct} in {module}")
                roots.append((api_version, kind, key))
    any_version = []
    for kind in ANY_VERSION_KINDS:
        if (META, kind) not in pb:
            die(f"meta/v1 {kind} missing from k8s-pb")
        any_version.append((kind, (META, kind)))

    # Only messages reachable from a root are emitted, plus every special one (the decoder converts each kind).
    order: list[tuple[str, str]] = []
    seen = set()
    queue = deque(sorted({k for _, _, k in roots} | {k for _, k in any_version} | set(SPECIAL)))
    while queue:
        key = queue.popleft()
        if key in seen:
            continue
        if key not in pb:
            die(f"message {key[0]}::{key[1]} is referenced but not in the parsed packages (add it to PACKAGES)")
        seen.add(key)
        order.append(key)
        for f in pb[key].fields:
            if f.ref:
                queue.append(f.ref)
    order.sort()
    index = {k: i for i, k in enumerate(order)}
    if len(order) > 65535:
        die("more than 65535 messages do not fit the u16 index")

    warnings = []
    messages = []
    for key in order:
        module, name = key
        msg = pb[key]
        special = SPECIAL.get(key, "None")
        go_fields = go[module].get(name.lower())
        oa = oa_names.get((module, name.lower()), {})
        fields = []
        for f in sorted(msg.fields, key=lambda f: f.tag):
            g = go_fields.get(f.tag) if go_fields is not None else None
            inline = bool(g and g.json == "" and "inline" in g.options)
            json = oa.get(norm(f.name))
            if inline:
                json = ""
            elif g and g.json and g.json != "-":
                if json is not None and json != g.json:
                    die(f"{module}::{name}.{f.name}: k8s-openapi says {json!r}, Go says {g.json!r}")
                json = json or g.json
            if json is None:
                json = lower_camel(f.name)
                if special == "None":
                    warnings.append(f"{module}::{name}.{f.name}: no JSON name in k8s-openapi or Go, using {json!r}")
            if g is None and special == "None":
                warnings.append(f"{module}::{name}.{f.name} (tag {f.tag}): not in the Go sources, zero values kept")
            omit_zero = bool(
                g
                and f.kind != "Message"
                and f.card == "One"
                and not g.go_type.startswith("*")
                and ({"omitempty", "omitzero"} & g.options)
            )
            fields.append(OutField(f.tag, json, f.kind, f.card, f.ref, omit_zero, inline))
        # prost renames JSONSchemaProps to JsonSchemaProps; show the Kubernetes spelling in error messages.
        proper = oa_proper[module].get(name.lower()) or go_proper[module].get(name.lower(), name)
        full = "k8s.io." + module.replace("/", ".") + "." + proper
        messages.append((full, special, fields))

    kinds = sorted((av, k, index[key]) for av, k, key in roots)
    for a, b in zip(kinds, kinds[1:]):
        if a[:2] == b[:2]:
            die(f"duplicate root {a[0]} {a[1]}")
    any_kinds = sorted((k, index[key]) for k, key in any_version)

    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)

    pb_ver = os.path.basename(os.path.dirname(os.path.normpath(pb_root)))
    oa_ver = "/".join(os.path.normpath(oa_root).split(os.sep)[-3::2])
    lines = [
        "//! Generated protobuf schema table for [`super`]: the Kubernetes messages reachable from the served kinds.",
        "//!",
        "//! @generated by `python3 scripts/gen-protobuf-schema.py` (see its header for the inputs) from",
        f"//! {pb_ver}, {oa_ver} and the Kubernetes Go API sources (release-1.35). Do not edit by hand: re-run it.",
        "",
        "use super::Card::{List, Map, One};",
        "use super::Kind::{Bool, Bytes, F64, I32, I64, Message, Str};",
        "use super::{INLINE, Msg, NONE, OMIT_ZERO, Special, f};",
        "",
        "/// The messages reachable from [`KINDS`] and [`ANY_VERSION_KINDS`], and the special ones; `Message(i)` is `MESSAGES[i]`.",
        "pub(super) static MESSAGES: &[Msg] = &[",
    ]
    for i, (full, special, fields) in enumerate(messages):
        lines.append(f'    // {i}')
        lines.append(f'    Msg {{ name: "{full}", special: Special::{special}, fields: &[')
        for f in fields:
            kind = f"Message({index[f.ref]})" if f.kind == "Message" else f.kind
            flags = "OMIT_ZERO" if f.omit_zero else "INLINE" if f.inline else "NONE"
            lines.append(f'        f({f.tag}, "{f.json}", {kind}, {f.card}, {flags}),')
        lines.append("    ] },")
    lines.append("];")
    lines.append("")
    lines.append("/// Top-level kinds by (apiVersion, kind), sorted for binary search.")
    lines.append("pub(super) static KINDS: &[(&str, &str, u16)] = &[")
    for av, k, i in kinds:
        lines.append(f'    ("{av}", "{k}", {i}),')
    lines.append("];")
    lines.append("")
    lines.append("/// meta/v1 kinds accepted under any apiVersion (the options every group version registers), sorted.")
    lines.append("pub(super) static ANY_VERSION_KINDS: &[(&str, u16)] = &[")
    for k, i in any_kinds:
        lines.append(f'    ("{k}", {i}),')
    lines.append("];")
    out = os.path.normpath(args.out)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    nfields = sum(len(f) for _, _, f in messages)
    print(f"wrote {out}: {len(messages)} messages, {nfields} fields, {len(kinds)} kinds, {len(warnings)} warnings")


if __name__ == "__main__":
    main()

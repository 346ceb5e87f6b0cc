#!/usr/bin/env python3
"""A small kustomize for the subset deploy/ uses, for machines without kustomize/kubectl.

Supported in kustomization.yaml: `resources` (YAML files, or directories holding a
kustomization.yaml), `namespace`, `images` (name, newName, newTag, digest) and `patches`
given as `path:` to a strategic-merge patch (no `target`, no JSON 6902). Anything else
is refused with an error rather than rendered differently from kustomize.

Strategic merge follows Kubernetes' patch-merge keys for the fields deploy/ patches:
lists of containers, volumes, env, ports (by containerPort in pods, by port in
Services), volumeMounts (by mountPath) and imagePullSecrets merge item by item; every
other list is replaced; a `null` value deletes the key. `$patch` directives are refused.

When kubectl or kustomize is present, scripts/deploy-check.sh renders with both and
checks that this renderer gives the same objects, so it cannot drift unnoticed.

Usage: render.py <overlay-dir>   (writes a multi-document YAML stream to stdout)
"""

from __future__ import annotations

import copy
import os
import sys

import yaml

SUPPORTED_KEYS = {"apiVersion", "kind", "resources", "namespace", "images", "patches"}

CLUSTER_SCOPED = {
    "Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
    "PersistentVolume", "StorageClass", "PriorityClass", "IngressClass",
    "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration", "APIService",
}

# list field name -> merge key; `ports` depends on the object (see merge_key()).
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "env": "name",
    "volumeMounts": "mountPath",
    "imagePullSecrets": "name",
}


class RenderError(Exception):
    pass


def merge_key(field: str, kind: str) -> str | None:
    if field == "ports":
        return "port" if kind == "Service" else "containerPort"
    return MERGE_KEYS.get(field)


def load_docs(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d is not None]
    for d in docs:
        if not isinstance(d, dict) or "kind" not in d or "metadata" not in d:
            raise RenderError(f"{path}: every document must be a Kubernetes object with kind and metadata")
    return docs


def smp(base, patch, kind: str, field: str = ""):
    """Strategic merge of `patch` into `base` (both plain YAML values)."""
    if isinstance(patch, dict):
        if "$patch" in patch or any(k.startswith("$") for k in patch):
            raise RenderError(f"strategic-merge directive in patch ({sorted(patch)}) is not supported by render.py")
        if not isinstance(base, dict):
            return copy.deepcopy(patch)
        out = dict(base)
        for k, v in patch.items():
            if v is None:
                out.pop(k, None)
            elif k in out:
                out[k] = smp(out[k], v, kind, k)
            else:
                out[k] = copy.deepcopy(v)
        return out
    if isinstance(patch, list):
        key = merge_key(field, kind)
        if key is None or not isinstance(base, list):
            return copy.deepcopy(patch)
        # As kustomize (kyaml) orders a merged list: the patch's items first, in patch
        # order (merged with their base item if any), then the base items the patch
        # does not name. Order matters for env entries that use $(OTHER_VAR).
        head, named = [], set()
        for item in patch:
            if not isinstance(item, dict) or key not in item:
                raise RenderError(f"patch list `{field}` item without merge key `{key}`: {item!r}")
            named.add(item[key])
            match = next((x for x in base if isinstance(x, dict) and x.get(key) == item[key]), None)
            head.append(smp(match, item, kind, field) if match is not None else copy.deepcopy(item))
        out = head + [copy.deepcopy(x) for x in base if not (isinstance(x, dict) and x.get(key) in named)]
        return out
    return copy.deepcopy(patch)


def ident(obj: dict) -> tuple[str, str]:
    return obj["kind"], obj["metadata"]["name"]


def set_images(node, images: list[dict]) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            if k in ("containers", "initContainers", "ephemeralContainers") and isinstance(v, list):
                for c in v:
                    if isinstance(c, dict) and isinstance(c.get("image"), str):
                        c["image"] = rewrite_image(c["image"], images)
            set_images(v, images)
    elif isinstance(node, list):
        for v in node:
            set_images(v, images)


def split_image(image: str) -> tuple[str, str, str]:
    name, digest = (image.split("@", 1) + [""])[:2]
    tag = ""
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = name.rsplit(":", 1)
    return name, tag, digest


def rewrite_image(image: str, images: list[dict]) -> str:
    name, tag, digest = split_image(image)
    for rule in images:
        if rule.get("name") != name:
            continue
        unknown = set(rule) - {"name", "newName", "newTag", "digest"}
        if unknown:
            raise RenderError(f"images: unsupported keys {sorted(unknown)}")
        name = rule.get("newName", name)
        if "digest" in rule:
            return f"{name}@{rule['digest']}"
        if "newTag" in rule:
            tag, digest = str(rule["newTag"]), ""
        break
    out = name + (f":{tag}" if tag else "")
    return out + (f"@{digest}" if digest else "")


def build(directory: str) -> list[dict]:
    kfile = next((os.path.join(directory, n) for n in ("kustomization.yaml", "kustomization.yml", "Kustomization")
                  if os.path.isfile(os.path.join(directory, n))), None)
    if kfile is None:
        raise RenderError(f"{directory}: no kustomization.yaml")
    with open(kfile, encoding="utf-8") as f:
        kust = yaml.safe_load(f) or {}
    unknown = set(kust) - SUPPORTED_KEYS
    if unknown:
        raise RenderError(f"{kfile}: keys {sorted(unknown)} are not supported by render.py "
                          "(keep the kustomization to resources/namespace/images/patches, or use kustomize)")
    objects: list[dict] = []
    for res in kust.get("resources", []) or []:
        path = os.path.normpath(os.path.join(directory, res))
        docs = build(path) if os.path.isdir(path) else load_docs(path)
        for d in docs:
            if any(ident(o) == ident(d) for o in objects):
                raise RenderError(f"{kfile}: {ident(d)} is defined twice")
            objects.append(d)
    for p in kust.get("patches", []) or []:
        if set(p) != {"path"}:
            raise RenderError(f"{kfile}: patches entries must be `- path: <file>` (got {sorted(p)})")
        for patch in load_docs(os.path.join(directory, p["path"])):
            for i, o in enumerate(objects):
                if ident(o) == ident(patch):
                    objects[i] = smp(o, patch, o["kind"])
                    break
            else:
                raise RenderError(f"{kfile}: patch {p['path']} targets {ident(patch)}, which no resource defines")
    if kust.get("images"):
        for o in objects:
            set_images(o, kust["images"])
    if kust.get("namespace"):
        for o in objects:
            if o["kind"] not in CLUSTER_SCOPED:
                o["metadata"]["namespace"] = kust["namespace"]
    return objects


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        objects = build(argv[1])
    except (RenderError, OSError, yaml.YAMLError) as e:
        print(f"render.py: {e}", file=sys.stderr)
        return 1
    yaml.safe_dump_all(objects, sys.stdout, sort_keys=False, default_flow_style=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

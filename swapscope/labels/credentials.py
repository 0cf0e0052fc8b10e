"""Content Credentials (C2PA): the signed label of every file the forge writes, and the reader
``detect scan`` applies to any input (not only swapscope's).

A fake is signed as an edit of its source video (``c2pa.opened`` with the source as the parent
ingredient, then ``c2pa.edited`` with the IPTC digital source type
``compositeWithTrainedAlgorithmicMedia``); a dataset's real counterpart as a transcode of its
source (``c2pa.transcoded``, no synthetic source type). Both carry an ``org.swapscope.label``
assertion: the manifest id, the method, the source's and the checkpoint's sha256.

The key and certificate are the user's (``--sign-key`` / ``--sign-cert``: a PEM private key and a
PEM chain, leaf first), else a pair made for this installation on first use in the user's config
folder (``SWAPSCOPE_CONFIG_DIR``, else ``$XDG_CONFIG_HOME/swapscope``, else
``~/.config/swapscope``; the key file mode 0600). That pair's certificates name themselves
self-signed, and a reader reports them as such: they prove the file is unchanged since this
installation signed it, not who signed it.

Reading never touches the network (no remote manifests, no OCSP).
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from swapscope import __version__
from swapscope.errors import InputError

# the honest IPTC term for a swap into real footage (also in the container metadata)
DIGITAL_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia"
LABEL_ASSERTION = "org.swapscope.label"
SELF_SIGNED_ORG = "swapscope per-installation key (self-signed, identity not verified)"
AI_SOURCE_TYPES = ("trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia",
                   "algorithmicMedia", "compositeSynthetic")
_MIME = {".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime",
         ".avi": "video/x-msvideo", ".png": "image/png", ".jpg": "image/jpeg",
         ".jpeg": "image/jpeg", ".webp": "image/webp", ".tif": "image/tiff", ".tiff": "image/tiff",
         ".gif": "image/gif", ".heic": "image/heic", ".avif": "image/avif"}  # what c2pa reads
CAPTURE = "http://cv.iptc.org/newscodes/digitalsourcetype/digitalCapture"


# --- the signing key ----------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class SigningKey:
    chain: bytes  # PEM certificates, the signing (leaf) certificate first
    private_key: bytes  # PEM
    self_signed: bool  # the per-installation pair, not a certificate the user brought

    @property
    def algorithm(self):
        """The C2PA algorithm for the key: ES256/384/512 (EC), PS256 (RSA) or Ed25519."""
        import c2pa
        from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        key = load_pem_private_key(self.private_key, password=None)
        if isinstance(key, ec.EllipticCurvePrivateKey):
            return {256: c2pa.C2paSigningAlg.ES256, 384: c2pa.C2paSigningAlg.ES384,
                    521: c2pa.C2paSigningAlg.ES512}[key.curve.key_size]
        if isinstance(key, rsa.RSAPrivateKey):
            return c2pa.C2paSigningAlg.PS256
        if isinstance(key, ed25519.Ed25519PrivateKey):
            return c2pa.C2paSigningAlg.ED25519
        raise InputError(f"unsupported signing key type {type(key).__name__}")


def config_dir() -> Path:
    """swapscope's folder in the user's config folder."""
    if os.environ.get("SWAPSCOPE_CONFIG_DIR"):
        return Path(os.environ["SWAPSCOPE_CONFIG_DIR"])
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "swapscope"


def signing_key(key: str | Path | None = None, cert: str | Path | None = None) -> SigningKey:
    """The user's key and certificate chain (both or neither), else this installation's pair."""
    if bool(key) != bool(cert):
        raise InputError("give --sign-key and --sign-cert together (a PEM key and its PEM chain)")
    if not key:
        return local_signing_key()
    pair = []
    for path, what in ((key, "--sign-key"), (cert, "--sign-cert")):
        try:
            pair.append(Path(path).read_bytes())
        except OSError as exc:
            raise InputError(f"{path}: cannot read {what} ({exc.strerror or exc})") from None
    found = SigningKey(chain=pair[1], private_key=pair[0], self_signed=False)
    _check_pair(found, key, cert)
    return found


def _check_pair(found: SigningKey, key, cert, hint: str = "") -> None:
    """The key loads and belongs to the chain's first certificate: one InputError if not."""
    from cryptography import x509
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        PublicFormat,
        load_pem_private_key,
    )

    spki = (Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    try:
        private = load_pem_private_key(found.private_key, password=None)
        leaf = x509.load_pem_x509_certificates(found.chain)[0]
        ours, theirs = (k.public_key().public_bytes(*spki) for k in (private, leaf))
    except (ValueError, TypeError, IndexError, UnsupportedAlgorithm):  # keys parsed here too
        raise InputError(f"{key}, {cert}: not an unencrypted PEM private key and a PEM "
                         f"certificate chain{hint}") from None
    if ours != theirs:
        raise InputError(f"{cert}: its first certificate is not the one of {key}{hint}")


def local_signing_key(folder: Path | None = None) -> SigningKey:
    """This installation's self-signed pair, made on first use (key file mode 0600). Two
    processes making it at once agree on one: the folder is renamed into place whole."""
    folder = (folder or config_dir()) / "c2pa"
    if not (folder / "key.pem").is_file():
        _make_local_pair(folder)
    try:
        found = SigningKey(chain=(folder / "chain.pem").read_bytes(),
                           private_key=(folder / "key.pem").read_bytes(), self_signed=True)
    except OSError as exc:
        raise InputError(f"{folder}: cannot read the signing key ({exc.strerror or exc})") from None
    _check_pair(found, folder / "key.pem", folder / "chain.pem",
                f" (this installation's pair is damaged: move {folder} away and a new one is "
                "made on the next run)")
    return found


def _make_local_pair(folder: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _certificate(ca_key, ca_key, "swapscope local CA", None)
    leaf = _certificate(key, ca_key, "swapscope forge", ca)
    pem = serialization.Encoding.PEM
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    try:
        tmp.mkdir(parents=True, mode=0o700)
        descriptor = os.open(tmp / "key.pem", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
        (tmp / "chain.pem").write_bytes(leaf.public_bytes(pem) + ca.public_bytes(pem))
        try:
            os.rename(tmp, folder)
        except OSError:  # another process made it first: use theirs
            if not (folder / "key.pem").is_file():
                raise
    except OSError as exc:
        raise InputError(f"{folder}: cannot create the signing key ({exc.strerror or exc})"
                         ) from None
    finally:
        if tmp.exists():
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)


def _certificate(key, issuer_key, common_name: str, issuer, organization: str = SELF_SIGNED_ORG):
    """A CA (``issuer`` None) or a leaf certificate for C2PA signing: the leaf has the digital
    signature key usage, the emailProtection EKU and both key identifiers, which c2pa needs."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization)])
    now = dt.datetime.now(dt.timezone.utc)
    is_ca = issuer is None
    usage = dict.fromkeys(("content_commitment", "key_encipherment", "data_encipherment",
                           "key_agreement", "encipher_only", "decipher_only"), False)
    builder = (
        x509.CertificateBuilder().subject_name(name)
        .issuer_name(name if is_ca else issuer.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=0 if is_ca else None), True)
        .add_extension(x509.KeyUsage(digital_signature=not is_ca, key_cert_sign=is_ca,
                                     crl_sign=is_ca, **usage), True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )
    if not is_ca:
        builder = (
            builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]),
                                  False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                issuer_key.public_key()), False)
        )
    return builder.sign(issuer_key, hashes.SHA256())


# --- signing ------------------------------------------------------------------------------

def sign_file(path: Path, key: SigningKey, *, manifest_id: str, method: str, source: Path,
              source_sha256: str, checkpoint_sha256: str | None = None,
              title: str | None = None) -> None:
    """Sign ``path`` in place (through a temporary file: a failure leaves it as it was).
    ``title``: the name the file will have (default: its name now)."""
    import c2pa

    path, source = Path(path), Path(source)
    # a source c2pa can read is the parent ingredient of an edit; any other (mkv, webm, ...) is
    # named by its hash in swapscope's assertion, and the output is signed as created
    parent = _MIME.get(source.suffix.lower())
    builder = c2pa.Builder(json.dumps(_definition(title or path.name, key, manifest_id, method,
                                                  source_sha256, checkpoint_sha256,
                                                  edit=parent is not None)),
                           context=_offline())
    if parent is None:
        kind = (c2pa.C2paDigitalSourceType.DIGITAL_CAPTURE if method == "real" else
                c2pa.C2paDigitalSourceType.COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA)
        builder.set_intent(c2pa.C2paBuilderIntent.CREATE, kind)
    else:
        builder.set_intent(c2pa.C2paBuilderIntent.EDIT)
    # a temporary name remove_leftovers knows: a killed signing leaves nothing for good
    tmp = path.with_name(f".{path.stem}-c2pa.tmp-{os.getpid()}{path.suffix}")
    signer = None
    try:
        signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(key.algorithm, key.chain,
                                                           key.private_key, None))
        with open(path, "rb") as unsigned, open(tmp, "wb") as out:
            if parent is not None:
                with open(source, "rb") as stream:
                    builder.add_ingredient(json.dumps({"title": source.name,
                                                       "relationship": "parentOf"}),
                                           parent, stream)
            builder.sign(signer, _mime(path), unsigned, out)
        os.replace(tmp, path)
    except c2pa.C2paError as exc:
        raise InputError(f"{path}: could not sign its Content Credentials ({exc})") from None
    finally:
        tmp.unlink(missing_ok=True)
        if signer is not None:
            signer.close()


def _definition(title: str, key: SigningKey, manifest_id: str, method: str,
                source_sha256: str, checkpoint_sha256: str | None, edit: bool = True) -> dict:
    """The manifest: an edit of the source (``edit``), or a creation when the source is in a
    container c2pa cannot take as an ingredient."""

    if method == "real":
        action = {"action": "c2pa.transcoded" if edit else "c2pa.created",
                  "softwareAgent": {"name": "swapscope forge"},
                  "description": "real counterpart of a swapscope dataset, re-encoded"}
        if not edit:
            action["digitalSourceType"] = CAPTURE
    else:
        action = {"action": "c2pa.edited" if edit else "c2pa.created",
                  "digitalSourceType": DIGITAL_SOURCE_TYPE,
                  "softwareAgent": {"name": "swapscope forge", "version": __version__},
                  "description": f"face swap ({method}) made by swapscope, a deepfake "
                                 "forensics lab"}
    label = {"manifest_id": manifest_id, "method": method, "source_sha256": source_sha256,
             "checkpoint_sha256": checkpoint_sha256, "self_signed": key.self_signed}
    return {
        "claim_generator_info": [{"name": "swapscope", "version": __version__}],
        "title": title,
        "assertions": [{"label": "c2pa.actions", "data": {"actions": [action]}},
                       {"label": LABEL_ASSERTION, "data": label}],
    }


def _mime(path: Path) -> str:
    mime = _MIME.get(Path(path).suffix.lower())
    if mime is None:
        raise InputError(f"{path}: Content Credentials are written for mp4, mov and images only")
    return mime


def _offline():
    """A c2pa Context that fetches no remote manifests and makes no OCSP requests: reading and
    signing stay on this machine."""
    import c2pa

    settings = c2pa.Settings.from_json(json.dumps(
        {"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}}))
    return c2pa.Context(settings)


# --- reading ------------------------------------------------------------------------------

@dataclass
class Credential:
    """What a file's Content Credentials say, and whether they hold."""

    present: bool = False
    state: str | None = None  # c2pa's validation state: Valid, Trusted or Invalid
    valid: bool = False  # signed and unchanged since (Valid or Trusted)
    trusted: bool = False  # and the signer chains to a trust list
    issuer: str | None = None
    signer: str | None = None
    self_signed: bool = False  # swapscope's per-installation pair
    ai_generated: bool = False  # an action with a synthetic IPTC digital source type
    digital_source_types: list[str] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    generator: str | None = None
    swapscope: dict | None = None  # the org.swapscope.label assertion, if any
    failures: list[str] = field(default_factory=list)
    error: str | None = None  # a store that does not read

    def to_json(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        if not self.present:
            return "no Content Credentials" + (f" ({self.error})" if self.error else "")
        validity = ("valid, trusted signer" if self.trusted else
                    "valid, self-signed by a swapscope installation"
                    if self.valid and self.self_signed else
                    "valid, signer not on a trust list" if self.valid else
                    f"INVALID ({', '.join(self.failures) or self.error or self.state}): the file "
                    "changed after it was signed, or the signature is broken")
        made = "AI-generated or altered" if self.ai_generated else "no AI-generation assertion"
        return f"Content Credentials by {self.issuer or 'unknown issuer'}: {validity}; {made}"


def read_credential(path: str | Path) -> Credential:
    """The active manifest's credential of any file c2pa can read; ``present`` False if none."""
    import c2pa

    path = Path(path)
    if path.suffix.lower() not in _MIME:
        return Credential()
    try:
        with c2pa.Reader(str(path), context=_offline()) as reader:
            state = reader.get_validation_state()
            results = reader.get_validation_results() or {}
            manifest = reader.get_active_manifest() or {}
    except c2pa.C2paError as exc:
        message = str(exc).splitlines()[0][:200]
        if type(exc).__name__.endswith(("ManifestNotFound", "Io")):  # none, or nothing readable
            return Credential(error=None if "NotFound" in type(exc).__name__ else message)
        return Credential(present=True, state="Invalid", error=message)
    except OSError as exc:
        return Credential(error=exc.strerror or str(exc))
    return _credential(state, results, manifest)


def _credential(state: str | None, results: dict, manifest: dict) -> Credential:
    failures = [f.get("code", "?") for f in results.get("activeManifest", {}).get("failure", [])]
    failures = [f for f in failures if f != "signingCredential.untrusted"]  # not an alteration
    actions, types = [], []
    label = None
    for assertion in manifest.get("assertions", []):
        if assertion.get("label", "").startswith("c2pa.actions"):
            for action in assertion.get("data", {}).get("actions", []):
                actions.append(str(action.get("action")))
                if action.get("digitalSourceType"):
                    types.append(str(action["digitalSourceType"]))
        elif assertion.get("label") == LABEL_ASSERTION and isinstance(assertion.get("data"), dict):
            label = assertion["data"]
    info = manifest.get("signature_info", {})
    valid = state in ("Valid", "Trusted") and not failures
    generators = manifest.get("claim_generator_info") or [{}]
    return Credential(
        present=True, state=state, valid=valid, trusted=valid and state == "Trusted",
        issuer=info.get("issuer"), signer=info.get("common_name"),
        self_signed=info.get("issuer") == SELF_SIGNED_ORG,
        ai_generated=any(t.rsplit("/", 1)[-1] in AI_SOURCE_TYPES for t in types),
        digital_source_types=types, actions=actions,
        generator=str(generators[0].get("name")) if generators else None,
        swapscope=label, failures=failures,
    )

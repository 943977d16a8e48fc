#!/usr/bin/env python3
"""A small SAML 2.0 identity provider for Roster's tests, built on pysaml2's saml2.server.Server.

Endpoints (all on 127.0.0.1):
  GET  /metadata[?certs=primary|secondary|both]   IdP metadata (signing certificate(s), HTTP-Redirect SSO)
  GET  /sso?SAMLRequest=..&RelayState=..           login form (input name="username", a submit button)
  GET  /sso?...&auto_user=NAME                     the auto-submitting response form directly (API tests)
  POST /login                                      SAMLRequest, RelayState, username -> response form
  POST /control  {json}                            fault switches for the NEXT responses (they persist until
                                                   changed; {"reset": true} restores the defaults)
  GET  /control                                    the current switches as JSON

Switches: sign = response|assertion|both|none; signing_key = primary|secondary|rogue (rogue is in no
metadata); sign_alg = sha256|sha1; metadata_certs = primary|secondary|both; audience, recipient, destination,
in_response_to, issuer (overrides); not_before, not_on_or_after (offsets in seconds from now, applied to
Conditions and, for not_on_or_after, also SubjectConfirmationData); status (e.g. "Requester");
status_message.

The first line on stdout is `READY port=<port>`.
"""

import argparse
import base64
import copy
import datetime
import html
import json
import os
import subprocess
import sys
import tempfile
import threading
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, samlp
from saml2.config import IdPConfig
from saml2.saml import NAMEID_FORMAT_UNSPECIFIED, NAME_FORMAT_URI, NameID
from saml2.server import Server
from saml2.sigver import pre_signature_part
from saml2.xmldsig import DIGEST_SHA1, DIGEST_SHA256, SIG_RSA_SHA1, SIG_RSA_SHA256

XMLSEC = "/usr/bin/xmlsec1"
NODE_ASSERTION = "urn:oasis:names:tc:SAML:2.0:assertion:Assertion"
NODE_RESPONSE = "urn:oasis:names:tc:SAML:2.0:protocol:Response"

CLAIM_URIS = {
    "upn": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn",
    "name": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name",
    "mail": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
    "email": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
    "givenname": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname",
    "surname": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname",
    "objectid": "http://schemas.microsoft.com/identity/claims/objectidentifier",
    "groups": "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups",
}

DEFAULT_USERS = {
    "alice": {
        "upn": "alice@example.com",
        "mail": "alice@example.com",
        "givenname": "Alice",
        "surname": "Liddell",
        "objectid": "11111111-1111-1111-1111-111111111111",
        "groups": ["admins", "staff"],
    },
    "bob": {
        "upn": "bob@example.com",
        "mail": "bob@example.com",
        "givenname": "Bob",
        "surname": "Builder",
        "objectid": "22222222-2222-2222-2222-222222222222",
        "groups": ["staff"],
    },
}

DEFAULT_CONTROL = {
    "sign": "assertion",
    "signing_key": "primary",
    "sign_alg": "sha256",
    "metadata_certs": "primary",
    "audience": None,
    "recipient": None,
    "destination": None,
    "in_response_to": None,
    "issuer": None,
    "not_before": None,
    "not_on_or_after": None,
    "status": None,
    "status_message": None,
}


def make_key(directory, name):
    key = os.path.join(directory, f"{name}.key")
    cert = os.path.join(directory, f"{name}.crt")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "30",
         "-keyout", key, "-out", cert, "-subj", f"/CN=Roster test IdP {name}"],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    with open(cert) as f:
        body = "".join(line.strip() for line in f if not line.startswith("-----"))
    return {"key": key, "cert": cert, "b64": body}


def sp_metadata(entity_id, acs):
    e, a = html.escape(entity_id, quote=True), html.escape(acs, quote=True)
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="{e}">
  <md:SPSSODescriptor AuthnRequestsSigned="false" WantAssertionsSigned="true"
      protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
    <md:NameIDFormat>urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified</md:NameIDFormat>
    <md:AssertionConsumerService Binding="{BINDING_HTTP_POST}" Location="{a}" index="0" isDefault="true"/>
  </md:SPSSODescriptor>
</md:EntityDescriptor>
"""


def instant(offset_seconds=0):
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=offset_seconds)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


class Idp:
    def __init__(self, args, port):
        self.base = f"http://127.0.0.1:{port}"
        self.entity_id = f"{self.base}/metadata"
        self.dir = tempfile.mkdtemp(prefix="roster-saml-idp-")
        self.keys = {name: make_key(self.dir, name) for name in ("primary", "secondary", "rogue")}
        self.args = args
        self.users = load_users(args.users)
        self.control = copy.deepcopy(DEFAULT_CONTROL)
        self.lock = threading.Lock()
        self._server = None

    def server(self):
        with self.lock:
            if self._server is None:
                if self.args.sp_metadata_url:
                    with urllib.request.urlopen(self.args.sp_metadata_url, timeout=10) as r:
                        md = r.read().decode("utf-8")
                else:
                    md = sp_metadata(self.args.sp_entity_id, self.args.sp_acs)
                cnf = {
                    "entityid": self.entity_id,
                    "xmlsec_binary": XMLSEC,
                    "key_file": self.keys["primary"]["key"],
                    "cert_file": self.keys["primary"]["cert"],
                    "metadata": {"inline": [md]},
                    "service": {
                        "idp": {
                            "name": "Roster test IdP",
                            "endpoints": {
                                "single_sign_on_service": [(f"{self.base}/sso", BINDING_HTTP_REDIRECT)],
                            },
                            "policy": {
                                "default": {
                                    "lifetime": {"minutes": 60},
                                    "attribute_restrictions": None,
                                    "name_form": NAME_FORMAT_URI,
                                },
                            },
                            "name_id_format": [NAMEID_FORMAT_UNSPECIFIED],
                            "want_authn_requests_signed": False,
                        },
                    },
                    "delete_tmpfiles": True,
                }
                conf = IdPConfig()
                conf.load(cnf)
                self._server = Server(config=conf)
            return self._server

    def metadata(self, which=None):
        with self.lock:
            which = which or self.control["metadata_certs"]
        names = {"primary": ["primary"], "secondary": ["secondary"], "both": ["primary", "secondary"]}[which]
        kds = "".join(
            f"""
    <md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{self.keys[n]["b64"]}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"""
            for n in names
        )
        return f"""<?xml version="1.0" encoding="UTF-8"?>
<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="{self.entity_id}">
  <md:IDPSSODescriptor WantAuthnRequestsSigned="false" protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">{kds}
    <md:NameIDFormat>{NAMEID_FORMAT_UNSPECIFIED}</md:NameIDFormat>
    <md:SingleSignOnService Binding="{BINDING_HTTP_REDIRECT}" Location="{self.base}/sso"/>
  </md:IDPSSODescriptor>
</md:EntityDescriptor>
"""

    def respond(self, saml_request, relay_state, username):
        """Returns (acs_url, base64 SAMLResponse)."""
        server = self.server()
        req = server.parse_authn_request(saml_request, BINDING_HTTP_REDIRECT)
        args = server.response_args(req.message)
        with self.lock:
            c = copy.deepcopy(self.control)
        acs = args["destination"]
        in_response_to = c["in_response_to"] or args["in_response_to"]
        destination = c["destination"] or acs

        if c["status"]:
            code = c["status"]
            if not code.startswith("urn:"):
                code = f"urn:oasis:names:tc:SAML:2.0:status:{code}"
            resp = server.create_error_response(
                in_response_to, destination, (code, c["status_message"] or "Sign-in refused by the test IdP"),
                sign=False,
            )
            if isinstance(resp, str):
                resp = samlp.response_from_string(resp)
            xml = resp.to_string()
            if isinstance(xml, bytes):
                xml = xml.decode("utf-8")
            return acs, base64.b64encode(xml.encode("utf-8")).decode("ascii")

        attrs = self.users.get(username)
        if attrs is None:
            raise KeyError(f"unknown user {username!r}")
        identity = {}
        for k, v in attrs.items():
            identity[CLAIM_URIS.get(k, k)] = v if isinstance(v, list) else [v]
        name_id = NameID(format=NAMEID_FORMAT_UNSPECIFIED, text=attrs.get("upn", username))
        resp = server.create_authn_response(
            identity,
            in_response_to=args["in_response_to"],
            destination=acs,
            sp_entity_id=args["sp_entity_id"],
            name_id=name_id,
            authn={"class_ref": "urn:oasis:names:tc:SAML:2.0:ac:classes:Password"},
            sign_response=False,
            sign_assertion=False,
            encrypt_assertion=False,
        )
        if isinstance(resp, (str, bytes)):
            resp = samlp.response_from_string(resp)
        assertion = resp.assertion[0] if isinstance(resp.assertion, list) else resp.assertion

        # Fault switches.
        resp.destination = destination
        resp.in_response_to = in_response_to
        scd = assertion.subject.subject_confirmation[0].subject_confirmation_data
        scd.in_response_to = in_response_to
        if c["recipient"]:
            scd.recipient = c["recipient"]
        if c["audience"]:
            assertion.conditions.audience_restriction[0].audience[0].text = c["audience"]
        if c["issuer"]:
            resp.issuer.text = c["issuer"]
            assertion.issuer.text = c["issuer"]
        if c["not_before"] is not None:
            assertion.conditions.not_before = instant(int(c["not_before"]))
        if c["not_on_or_after"] is not None:
            assertion.conditions.not_on_or_after = instant(int(c["not_on_or_after"]))
            scd.not_on_or_after = instant(int(c["not_on_or_after"]))

        # Signing with the chosen key and algorithm.
        key = self.keys[c["signing_key"]]
        sign_alg, digest_alg = (SIG_RSA_SHA1, DIGEST_SHA1) if c["sign_alg"] == "sha1" else (SIG_RSA_SHA256, DIGEST_SHA256)
        to_sign = []
        if c["sign"] in ("assertion", "both"):
            assertion.signature = pre_signature_part(assertion.id, key["b64"], 1, sign_alg=sign_alg, digest_alg=digest_alg)
            to_sign.append((NODE_ASSERTION, assertion.id))
        if c["sign"] in ("response", "both"):
            resp.signature = pre_signature_part(resp.id, key["b64"], 1, sign_alg=sign_alg, digest_alg=digest_alg)
            to_sign.append((NODE_RESPONSE, resp.id))
        xml = resp.to_string()
        if isinstance(xml, bytes):
            xml = xml.decode("utf-8")
        for node_name, node_id in to_sign:
            xml = server.sec.sign_statement(xml, node_name, key_file=key["key"], node_id=node_id)
            if isinstance(xml, bytes):
                xml = xml.decode("utf-8")
        return acs, base64.b64encode(xml.encode("utf-8")).decode("ascii")


def load_users(spec):
    if not spec:
        return DEFAULT_USERS
    if spec.lstrip().startswith("{"):
        return json.loads(spec)
    with open(spec) as f:
        return json.load(f)


def post_form(acs, saml_response, relay_state):
    a = html.escape(acs, quote=True)
    r = html.escape(saml_response, quote=True)
    rs = html.escape(relay_state or "", quote=True)
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Signing in</title></head>
<body onload="document.forms[0].submit()">
<form method="post" action="{a}">
<input type="hidden" name="SAMLResponse" value="{r}">
<input type="hidden" name="RelayState" value="{rs}">
<button type="submit" id="continue">Continue</button>
</form>
</body></html>
"""


def login_form(idp, saml_request, relay_state):
    options = "".join(f'<option value="{html.escape(u)}">{html.escape(u)}</option>' for u in idp.users)
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Test IdP sign-in</title></head>
<body>
<h1>Test IdP sign-in</h1>
<form method="post" action="/login">
<input type="hidden" name="SAMLRequest" value="{html.escape(saml_request, quote=True)}">
<input type="hidden" name="RelayState" value="{html.escape(relay_state, quote=True)}">
<label>Username <input name="username" id="username" list="users" autocomplete="off"></label>
<datalist id="users">{options}</datalist>
<button type="submit" id="signin">Sign in</button>
</form>
</body></html>
"""


def make_handler(idp):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt, *a):
            sys.stderr.write("saml_idp: " + (fmt % a) + "\n")

        def send(self, status, body, ctype="text/html; charset=utf-8"):
            data = body.encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            url = urllib.parse.urlsplit(self.path)
            q = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
            try:
                if url.path == "/metadata":
                    self.send(200, idp.metadata(q.get("certs")), "application/samlmetadata+xml")
                elif url.path == "/sso":
                    if "SAMLRequest" not in q:
                        self.send(400, "missing SAMLRequest", "text/plain; charset=utf-8")
                        return
                    relay = q.get("RelayState", "")
                    if q.get("auto_user"):
                        acs, resp = idp.respond(q["SAMLRequest"], relay, q["auto_user"])
                        self.send(200, post_form(acs, resp, relay))
                    else:
                        idp.server().parse_authn_request(q["SAMLRequest"], BINDING_HTTP_REDIRECT)
                        self.send(200, login_form(idp, q["SAMLRequest"], relay))
                elif url.path == "/control":
                    with idp.lock:
                        self.send(200, json.dumps(idp.control), "application/json")
                else:
                    self.send(404, "not found", "text/plain; charset=utf-8")
            except Exception as e:  # noqa: BLE001 - report every failure to the test
                self.send(500, f"saml_idp error: {type(e).__name__}: {e}", "text/plain; charset=utf-8")

        def do_POST(self):
            url = urllib.parse.urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode("utf-8")
            try:
                if url.path == "/control":
                    changes = json.loads(body or "{}")
                    with idp.lock:
                        if changes.pop("reset", False):
                            idp.control = copy.deepcopy(DEFAULT_CONTROL)
                        unknown = set(changes) - set(DEFAULT_CONTROL)
                        if unknown:
                            self.send(400, f"unknown switches: {sorted(unknown)}", "text/plain; charset=utf-8")
                            return
                        idp.control.update(changes)
                        self.send(200, json.dumps(idp.control), "application/json")
                elif url.path == "/login":
                    f = dict(urllib.parse.parse_qsl(body, keep_blank_values=True))
                    user = f.get("username", "").strip()
                    if user not in idp.users:
                        self.send(200, login_form(idp, f.get("SAMLRequest", ""), f.get("RelayState", ""))
                                  .replace("<form", '<p id="error">Unknown user.</p><form', 1))
                        return
                    acs, resp = idp.respond(f["SAMLRequest"], f.get("RelayState", ""), user)
                    self.send(200, post_form(acs, resp, f.get("RelayState", "")))
                else:
                    self.send(404, "not found", "text/plain; charset=utf-8")
            except Exception as e:  # noqa: BLE001
                self.send(500, f"saml_idp error: {type(e).__name__}: {e}", "text/plain; charset=utf-8")

    return Handler


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--sp-metadata-url")
    p.add_argument("--sp-entity-id")
    p.add_argument("--sp-acs")
    p.add_argument("--users", help="JSON file or inline JSON: username -> attributes (upn, mail, ...)")
    args = p.parse_args()
    if not args.sp_metadata_url and not (args.sp_entity_id and args.sp_acs):
        p.error("give --sp-metadata-url, or --sp-entity-id and --sp-acs")
    if not os.path.exists(XMLSEC):
        sys.exit(f"{XMLSEC} is missing; run `make test-deps`")
    httpd = ThreadingHTTPServer(("127.0.0.1", args.port), None)
    port = httpd.server_address[1]
    idp = Idp(args, port)
    httpd.RequestHandlerClass = make_handler(idp)
    print(f"READY port={port}", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()

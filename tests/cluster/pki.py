"""The test cluster's certificates and kubeconfigs, made with the openssl command.

One CA signs everything: the API server's serving certificate and every client certificate.
Kubernetes authenticates a client certificate as user = CN, groups = O, so the identities below
are the ones a kubeadm cluster gives its components, and the default RBAC bindings apply to
them unchanged. All keys are ECDSA P-256 (quick to make; Kubernetes takes them everywhere,
service-account tokens are then signed ES256).

Files (in DIR/pki): ca.{crt,key}, apiserver.{crt,key}, sa.{key,pub}, NAME.{crt,key} for each
client of CLIENTS, and front-proxy-ca.{crt,key} with front-proxy-client.{crt,key}.
"""
import base64
import os
import subprocess

import yaml

# The API server's names and addresses: its bridge address, the `kubernetes` Service's
# ClusterIP, loopback (the delay relay and local clients), and the Service's DNS names.
APISERVER_SANS = ["IP:10.88.0.1", "IP:10.96.0.1", "IP:127.0.0.1", "DNS:kubernetes",
                  "DNS:kubernetes.default", "DNS:kubernetes.default.svc",
                  "DNS:kubernetes.default.svc.cluster.local"]

# name -> (CN, [O...]): the user and groups the API server sees for that client.
CLIENTS = {
    "admin": ("holdfast-test-admin", ["system:masters"]),
    "controller-manager": ("system:kube-controller-manager", []),
    "scheduler": ("system:kube-scheduler", []),
    "kube-proxy": ("system:kube-proxy", []),
    "node": ("system:node:hfc-node", ["system:nodes"]),
}

DAYS = "3650"


def _openssl(*args, stdin=None):
    r = subprocess.run(["openssl"] + list(args), input=stdin, capture_output=True)
    if r.returncode != 0:
        raise RuntimeError("openssl %s failed: %s" % (args[0], r.stderr.decode(errors="replace").strip()))
    return r.stdout


def _key(path):
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path)
    os.chmod(path, 0o600)


def _signed(pki, name, subject, extensions, ca="ca"):
    """NAME.key and NAME.crt signed by CA, with the given v3 extension lines."""
    key, csr, crt = (os.path.join(pki, name + ext) for ext in (".key", ".csr", ".crt"))
    ext = os.path.join(pki, name + ".ext")
    _key(key)
    _openssl("req", "-new", "-key", key, "-subj", subject, "-out", csr)
    with open(ext, "w") as f:
        f.write("\n".join(extensions) + "\n")
    _openssl("x509", "-req", "-in", csr, "-CA", os.path.join(pki, ca + ".crt"),
             "-CAkey", os.path.join(pki, ca + ".key"), "-CAcreateserial", "-days", DAYS,
             "-sha256", "-extfile", ext, "-out", crt)
    os.unlink(csr)
    os.unlink(ext)


def _subject(cn, orgs):
    return "".join("/O=%s" % o for o in orgs) + "/CN=%s" % cn


def _ca(pki, name, cn):
    key = os.path.join(pki, name + ".key")
    _key(key)
    _openssl("req", "-x509", "-new", "-key", key, "-subj", "/CN=" + cn, "-days", DAYS, "-sha256",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", os.path.join(pki, name + ".crt"))


def make(pki):
    """Writes every key and certificate into the directory pki (created)."""
    os.makedirs(pki, exist_ok=True)
    _ca(pki, "ca", "holdfast-test-cluster-ca")
    # The front proxy's own CA and client certificate: the API server publishes that CA in
    # kube-system/extension-apiserver-authentication, where the controller-manager and the
    # scheduler look for it (and log an error every few seconds when it is missing).
    _ca(pki, "front-proxy-ca", "holdfast-test-front-proxy-ca")
    _signed(pki, "front-proxy-client", "/CN=front-proxy-client",
            ["basicConstraints=CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment",
             "extendedKeyUsage=clientAuth"], ca="front-proxy-ca")
    _signed(pki, "apiserver", "/CN=kube-apiserver",
            ["basicConstraints=CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment",
             "extendedKeyUsage=serverAuth", "subjectAltName=" + ",".join(APISERVER_SANS)])
    for name, (cn, orgs) in CLIENTS.items():
        _signed(pki, name, _subject(cn, orgs),
                ["basicConstraints=CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment",
                 "extendedKeyUsage=clientAuth"])
    sa_key = os.path.join(pki, "sa.key")
    _key(sa_key)
    with open(os.path.join(pki, "sa.pub"), "wb") as f:
        f.write(_openssl("pkey", "-in", sa_key, "-pubout"))


def _b64(path):
    with open(path, "rb") as f:
        return base64.b64encode(f.read()).decode()


def write_token_kubeconfig(path, pki, user, token, server, namespace=None):
    """A kubeconfig for a bearer token (a ServiceAccount's), the cluster's CA embedded."""
    _write_config(path, pki, user, {"token": token}, server, namespace)


def write_kubeconfig(path, pki, client, server, namespace=None):
    """A kubeconfig for the client certificate pki/CLIENT.{crt,key}, everything embedded so the
    file stands alone."""
    _write_config(path, pki, CLIENTS[client][0], {
        "client-certificate-data": _b64(os.path.join(pki, client + ".crt")),
        "client-key-data": _b64(os.path.join(pki, client + ".key"))}, server, namespace)


def _write_config(path, pki, user, credentials, server, namespace):
    context = {"cluster": "hfc", "user": user}
    if namespace:
        context["namespace"] = namespace
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "hfc", "cluster": {
            "server": server, "certificate-authority-data": _b64(os.path.join(pki, "ca.crt"))}}],
        "users": [{"name": user, "user": credentials}],
        "contexts": [{"name": "hfc", "context": context}],
        "current-context": "hfc",
    }
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        yaml.safe_dump(config, f, default_flow_style=False)
    os.chmod(path, 0o600)

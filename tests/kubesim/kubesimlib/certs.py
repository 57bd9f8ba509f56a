"""A CA and an API server serving certificate made with the openssl command-line tool."""
import os
import subprocess


def _run(args, cwd):
    subprocess.run(["openssl"] + args, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def ensure_certs(state_dir, host):
    """Create DIR/pki/{ca.crt,ca.key,apiserver.crt,apiserver.key} unless present. Returns paths."""
    pki = os.path.join(state_dir, "pki")
    os.makedirs(pki, exist_ok=True)
    ca_crt, ca_key = os.path.join(pki, "ca.crt"), os.path.join(pki, "ca.key")
    crt, key = os.path.join(pki, "apiserver.crt"), os.path.join(pki, "apiserver.key")
    if all(os.path.exists(p) for p in (ca_crt, ca_key, crt, key)):
        return ca_crt, crt, key
    _run(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
          "-keyout", "ca.key", "-out", "ca.crt", "-days", "3650", "-subj", "/CN=kubesim-ca",
          "-addext", "basicConstraints=critical,CA:TRUE",
          "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature"], pki)
    _run(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
          "-keyout", "apiserver.key", "-out", "apiserver.csr", "-subj", "/CN=kube-apiserver"], pki)
    sans = ["IP:127.0.0.1", "DNS:localhost", "DNS:kubernetes", "DNS:kubernetes.default",
            "DNS:kubernetes.default.svc", "DNS:kubernetes.default.svc.cluster.local"]
    if host not in ("127.0.0.1", "localhost", "0.0.0.0"):
        sans.append(("IP:" if host[0].isdigit() else "DNS:") + host)
    with open(os.path.join(pki, "ext.cnf"), "w") as f:
        f.write("subjectAltName=%s\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature,"
                "keyEncipherment\nbasicConstraints=CA:FALSE\n" % ",".join(sans))
    _run(["x509", "-req", "-in", "apiserver.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
          "-out", "apiserver.crt", "-days", "3650", "-extfile", "ext.cnf"], pki)
    for p in (ca_key, key):
        os.chmod(p, 0o600)
    return ca_crt, crt, key

"""TensorFlow's own gs:// client against a local GCS emulator, in private mount and network namespaces:

    unshare --mount --net --fork -- python -m tests.gcs_netns SPEC.json RESULT.json

TensorFlow's GCS filesystem has Google's endpoints built in (no variable points it elsewhere), so inside the
namespaces Google's API host names resolve to loopback (a hosts file bound over /etc/hosts), where one in-memory
emulator (gcp-storage-emulator) answers twice: on 443 with TLS, under a certificate for those names from a
throwaway CA that TensorFlow's curl is told to trust, and on 80 without, for the Python clients
(STORAGE_EMULATOR_HOST) and for the resumable-upload addresses the emulator hands out, which always say http://.
Nothing leaves the namespaces. SPEC holds {"bucket": NAME, "commands": [argv, ...]}; each command runs in turn,
and RESULT gets each one's exit status and output and the bucket's object names.
"""
import functools
import http.server
import json
import os
import ssl
import subprocess
import sys
import tempfile
import threading

GOOGLE_HOSTS = ("www.googleapis.com", "storage.googleapis.com", "oauth2.googleapis.com")


def certificates(folder):
    """(CA certificate, server certificate, server key) for GOOGLE_HOSTS, made with openssl."""
    ca_key, ca, key, request, cert = (os.path.join(folder, name) for name in
                                      ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem"))
    names = ",".join(f"DNS:{host}" for host in GOOGLE_HOSTS)
    extensions = os.path.join(folder, "san.cnf")
    with open(extensions, "w") as f:
        f.write(f"subjectAltName={names}\n")
    for command in (["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca, "-days", "1",
                     "-subj", "/CN=throwaway test CA"],
                    ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", request, "-subj",
                     f"/CN={GOOGLE_HOSTS[1]}"],
                    ["x509", "-req", "-in", request, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert,
                     "-days", "1", "-extfile", extensions]):
        subprocess.run(["openssl", *command], check=True, capture_output=True)
    return ca, cert, key


def mend_emulator():
    """Two ways TensorFlow's uploads differ from what the emulator reads: an upload body sent in chunks also
    carries a Content-Length (of the whole, unchunked body), which the emulator takes over the chunking (HTTP
    says chunking wins), and empty objects (folder markers) come as media uploads with no body, which it reads
    as no data at all."""
    from gcp_storage_emulator import server
    from gcp_storage_emulator.handlers import objects

    read_raw_data, media_upload = server._read_raw_data, objects._media_upload

    def chunking_first(request_handler):
        if (request_handler.headers.get("Transfer-Encoding") or "").lower() != "chunked":
            return read_raw_data(request_handler)
        body = b""
        while True:
            size = int(request_handler.rfile.readline().strip() or b"0", 16)
            if not size:
                request_handler.rfile.readline()  # the blank line after the last chunk
                return body
            body += request_handler.rfile.read(size)
            request_handler.rfile.readline()

    def with_empty_body(request, response, storage):
        if request.data is None:
            request._data = b""
        return media_upload(request, response, storage)

    server._read_raw_data, objects._media_upload = chunking_first, with_empty_body


def serve(storage, port, context=None):
    from gcp_storage_emulator.server import RequestHandler

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), functools.partial(RequestHandler, storage))
    if context:
        httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def main(spec_path, result_path):
    from gcp_storage_emulator.storage import Storage

    with open(spec_path) as f:
        spec = json.load(f)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    scratch = tempfile.mkdtemp(prefix="gcs-netns-")
    hosts = os.path.join(scratch, "hosts")
    with open(hosts, "w") as f:
        f.write(f"127.0.0.1 localhost {' '.join(GOOGLE_HOSTS)}\n")
    subprocess.run(["mount", "--bind", hosts, "/etc/hosts"], check=True)
    ca, cert, key = certificates(scratch)
    mend_emulator()
    storage = Storage(use_memory_fs=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    servers = [serve(storage, 443, context), serve(storage, 80)]
    env = {**os.environ, "CURL_CA_BUNDLE": ca, "SSL_CERT_FILE": ca, "GOOGLE_AUTH_TOKEN_FOR_TESTING": "any",
           "NO_GCE_CHECK": "True", "STORAGE_EMULATOR_HOST": "http://127.0.0.1:80",
           "GOOGLE_CLOUD_PROJECT": "test-project"}
    os.environ.update(env)
    from google.cloud import storage as gcs

    client = gcs.Client()
    client.create_bucket(spec["bucket"])
    results = []
    for command in spec["commands"]:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        results.append({"command": command, "returncode": done.returncode, "stdout": done.stdout,
                        "stderr": done.stderr})
        if done.returncode:
            break
    objects = sorted(blob.name for blob in client.list_blobs(spec["bucket"]))
    for httpd in servers:
        httpd.shutdown()
    with open(result_path, "w") as f:
        json.dump({"results": results, "objects": objects}, f)


if __name__ == "__main__":
    main(*sys.argv[1:3])

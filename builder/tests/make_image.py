#!/usr/bin/env python3
# Writes a two-layer busybox container image for smolvm's tests:
#   make_image.py docker OUT.tar   a `docker save` archive (classic layout)
#   make_image.py oci OUT_DIR      an OCI layout (index -> index -> manifest, gzip layer)
#   make_image.py oci-arm OUT_DIR  the same, but its index has no linux/amd64 entry
# Layer 1: busybox, /etc/gone, /opt/old/a. Layer 2: a whiteout for /etc/gone,
# an opaque /opt/old holding b, /etc/motd.
import hashlib, io, json, os, sys, tarfile
kind, out = sys.argv[1], sys.argv[2]
# What the image runs by default: checks its env, whiteout, opaque dir, user, workdir.
CMD = 'echo $GREETING; test -e /etc/gone || echo gone; test -e /opt/old/a || cat /opt/old/b; echo; busybox id -u; pwd'
def layer(entries):
    buf = io.BytesIO()
    t = tarfile.open(fileobj=buf, mode='w')
    for name, data in entries:
        i = tarfile.TarInfo(name); i.mode = 0o755
        if data is None: i.type = tarfile.DIRTYPE; t.addfile(i)
        elif isinstance(data, str) and data.startswith('->'): i.type = tarfile.SYMTYPE; i.linkname = data[2:]; t.addfile(i)
        else: i.size = len(data); t.addfile(i, io.BytesIO(data))
    t.close(); return buf.getvalue()
bb = open('/bin/busybox', 'rb').read()
l1 = layer([('bin', None), ('bin/busybox', bb), ('bin/sh', '->busybox'), ('etc', None), ('etc/gone', b'x'),
            ('etc/passwd', b'root:x:0:0::/:/bin/sh\napp:x:1000:1000::/:/bin/sh\n'), ('opt/old', None), ('opt/old/a', b'a')])
l2 = layer([('etc/.wh.gone', b''), ('opt/old/.wh..wh..opq', b''), ('opt/old/b', b'b'), ('etc/motd', b'hi\n')])
config = json.dumps({'architecture': 'amd64', 'os': 'linux', 'config': {
    'Cmd': ['/bin/sh', '-c', CMD], 'Env': ['PATH=/bin', 'GREETING=hello'],
    'WorkingDir': '/opt', 'User': 'app'}}).encode()
def sha(b): return hashlib.sha256(b).hexdigest()
if kind == 'docker':
    t = tarfile.open(out, 'w')
    def add(name, data):
        i = tarfile.TarInfo(name); i.size = len(data); t.addfile(i, io.BytesIO(data))
    add('l1/layer.tar', l1); add('l2/layer.tar', l2); add('cfg.json', config)
    add('manifest.json', json.dumps([{'Config': 'cfg.json', 'RepoTags': ['t:1'], 'Layers': ['l1/layer.tar', 'l2/layer.tar']}]).encode())
    t.close()
else:
    os.makedirs(out + '/blobs/sha256')
    def blob(data):
        open(out + '/blobs/sha256/' + sha(data), 'wb').write(data)
        return {'digest': 'sha256:' + sha(data), 'size': len(data)}
    import gzip
    l2gz = gzip.compress(l2, mtime=0)
    man = json.dumps({'schemaVersion': 2, 'mediaType': 'application/vnd.oci.image.manifest.v1+json',
        'config': dict(blob(config), mediaType='application/vnd.oci.image.config.v1+json'),
        'layers': [blob(l1), blob(l2gz)]}).encode()
    arch = 'arm64' if kind == 'oci-arm' else 'amd64'
    idx = json.dumps({'schemaVersion': 2, 'mediaType': 'application/vnd.oci.image.index.v1+json', 'manifests': [
        dict(blob(man), mediaType='application/vnd.oci.image.manifest.v1+json', platform={'os': 'linux', 'architecture': arch}),
        dict(blob(b'{}'), mediaType='application/vnd.oci.image.manifest.v1+json', platform={'os': 'linux', 'architecture': 's390x'})]}).encode()
    open(out + '/index.json', 'wb').write(json.dumps({'schemaVersion': 2, 'manifests': [
        dict(blob(idx), mediaType='application/vnd.oci.image.index.v1+json')]}).encode())

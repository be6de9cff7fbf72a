//! moto, AWS's emulator, in server mode with SigV4 checking on, and an EC2 proxy in front
//! of it that adds what moto does not emulate: `ClientToken` idempotency, eventual
//! consistency (`InvalidInstanceID.NotFound` right after `RunInstances`), throttling and
//! capacity failures. The proxy forwards every other request untouched (its signature
//! still holds: the `Host` header is kept).
//!
//! The AWS SDK for Python (boto3) is the oracle: it creates the IAM user berth signs as,
//! picks an AMI, and reads what berth did to EC2.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A `moto_server` on a free port, with an IAM user whose key berth uses.
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:<port>`
    pub url: String,
    /// The IAM user's access key id.
    pub access_key_id: String,
    /// Its secret.
    pub secret_access_key: String,
    /// An AMI moto knows (AMI validation is on).
    pub image: String,
}

impl Moto {
    /// Starts moto with signature checking, instance-type and AMI validation on, then
    /// spends its unchecked calls on an IAM user allowed `ec2:*` and its access key.
    pub fn start() -> Moto {
        let found = Command::new("sh")
            .args(["-c", "command -v moto_server"])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            found,
            "moto_server is not installed; install it with `pip install 'moto[server]'` (.ci/run does)"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("INITIAL_NO_AUTH_ACTION_COUNT", "3")
            .env("MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION", "true")
            .env("MOTO_ENABLE_AMI_VALIDATION", "true")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let url = format!("http://127.0.0.1:{port}");
        let bootstrap = r#"
import boto3, json, sys
url = sys.argv[1]
iam = boto3.client("iam", endpoint_url=url, region_name="us-east-1",
                   aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
iam.create_user(UserName="berth")
iam.put_user_policy(UserName="berth", PolicyName="ec2", PolicyDocument=json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ec2:*", "Resource": "*"}]}))
key = iam.create_access_key(UserName="berth")["AccessKey"]
ec2 = boto3.client("ec2", endpoint_url=url, region_name="us-east-1",
                   aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"])
images = ec2.describe_images(Owners=["amazon"])["Images"]
image = sorted(i["ImageId"] for i in images if i.get("Architecture") == "x86_64")[0]
print(json.dumps({"id": key["AccessKeyId"], "secret": key["SecretAccessKey"], "image": image}))
"#;
        let out = Command::new("python3")
            .args(["-c", bootstrap, &url])
            .output()
            .expect("python3");
        assert!(
            out.status.success(),
            "bootstrapping moto failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let keys: serde_json::Value = serde_json::from_slice(&out.stdout).expect("keys");
        Moto {
            child,
            url,
            access_key_id: keys["id"].as_str().unwrap().into(),
            secret_access_key: keys["secret"].as_str().unwrap().into(),
            image: keys["image"].as_str().unwrap().into(),
        }
    }

    /// Runs `script` (Python, with `ec2` a boto3 EC2 client of berth's IAM user in
    /// us-east-1) and returns what it printed as JSON.
    pub fn boto3(&self, script: &str) -> serde_json::Value {
        let program = format!(
            "import boto3, json, sys\nec2 = boto3.client('ec2', endpoint_url=sys.argv[1], region_name='us-east-1', aws_access_key_id=sys.argv[2], aws_secret_access_key=sys.argv[3])\n{script}"
        );
        let out = Command::new("python3")
            .args([
                "-c",
                &program,
                &self.url,
                &self.access_key_id,
                &self.secret_access_key,
            ])
            .output()
            .expect("python3");
        assert!(
            out.status.success(),
            "boto3 failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "boto3 printed no JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// The instances carrying tag `key`=`value`, as boto3 reads them: `[{id, state}]`.
    pub fn instances_tagged(&self, key: &str, value: &str) -> Vec<serde_json::Value> {
        let script = format!(
            "r = ec2.describe_instances(Filters=[{{'Name': 'tag:{key}', 'Values': ['{value}']}}])\nprint(json.dumps([{{'id': i['InstanceId'], 'state': i['State']['Name'], 'tags': {{t['Key']: t['Value'] for t in i.get('Tags', [])}}}} for r in r['Reservations'] for i in r['Instances']]))"
        );
        self.boto3(&script).as_array().unwrap().clone()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the proxy does to the next requests of one EC2 action.
#[derive(Debug, Default)]
pub struct Ec2Faults {
    /// Answer this many next `RunInstances` with `RequestLimitExceeded`.
    pub throttle_runs: u32,
    /// Answer this many next `RunInstances` with `InsufficientInstanceCapacity`.
    pub no_capacity: u32,
    /// After a `RunInstances`, answer this many `DescribeInstances` with
    /// `InvalidInstanceID.NotFound` (EC2's eventual consistency).
    pub not_found_after_run: u32,
    /// Answer this many next `StopInstances` with `UnauthorizedOperation` (an IAM policy
    /// that denies stopping).
    pub refuse_stops: u32,
    /// Answer this many next `StartInstances` with `InsufficientInstanceCapacity` (what
    /// EC2 answers when a stopped instance's type has no room left in its zone).
    pub refuse_starts: u32,
    /// Change every request's body after it was signed (moto must refuse it).
    pub tamper: bool,
    /// Requests seen, by action.
    pub seen: HashMap<String, u32>,
    /// `RunInstances` replies by `ClientToken`: the same token again gets the same reply,
    /// as EC2 does (moto would make another instance).
    pub by_token: HashMap<String, String>,
    pending_not_found: u32,
}

/// An HTTP proxy in front of moto's EC2 that injects [`Ec2Faults`].
pub struct Ec2Proxy {
    /// `http://127.0.0.1:<port>`
    pub url: String,
    /// What it injects, and what it saw.
    pub faults: Arc<Mutex<Ec2Faults>>,
    task: tokio::task::JoinHandle<()>,
}

fn ec2_error(code: &str, message: &str) -> axum::response::Response {
    use axum::response::IntoResponse;
    let status = if code == "RequestLimitExceeded" {
        503
    } else {
        400
    };
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors><RequestID>proxy-{code}</RequestID></Response>"
    );
    (
        axum::http::StatusCode::from_u16(status).unwrap(),
        [("content-type", "text/xml")],
        body,
    )
        .into_response()
}

impl Ec2Proxy {
    /// Starts a proxy to `upstream` (moto's URL).
    pub async fn start(upstream: &str) -> Ec2Proxy {
        use axum::body::Bytes;
        use axum::http::{HeaderMap, Method, Uri};
        use axum::response::IntoResponse;
        let faults: Arc<Mutex<Ec2Faults>> = Arc::default();
        super::install_crypto();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let upstream = upstream.to_string();
        let state = faults.clone();
        let handler = move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let (faults, http, upstream) = (state.clone(), http.clone(), upstream.clone());
            async move {
                let form: HashMap<String, String> = form_urlencoded::parse(&body)
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect();
                let action = form.get("Action").cloned().unwrap_or_default();
                let token = form.get("ClientToken").cloned();
                {
                    let mut f = faults.lock().unwrap();
                    *f.seen.entry(action.clone()).or_default() += 1;
                    if action == "RunInstances" {
                        if let Some(reply) = token.as_ref().and_then(|t| f.by_token.get(t)) {
                            return ([("content-type", "text/xml")], reply.clone()).into_response();
                        }
                        if f.throttle_runs > 0 {
                            f.throttle_runs -= 1;
                            return ec2_error("RequestLimitExceeded", "Request limit exceeded.");
                        }
                        if f.no_capacity > 0 {
                            f.no_capacity -= 1;
                            return ec2_error(
                                "InsufficientInstanceCapacity",
                                "We currently do not have sufficient capacity in the Availability Zone you requested.",
                            );
                        }
                    }
                    if action == "StopInstances" && f.refuse_stops > 0 {
                        f.refuse_stops -= 1;
                        return ec2_error(
                            "UnauthorizedOperation",
                            "You are not authorized to perform this operation.",
                        );
                    }
                    if action == "StartInstances" && f.refuse_starts > 0 {
                        f.refuse_starts -= 1;
                        return ec2_error(
                            "InsufficientInstanceCapacity",
                            "We currently do not have sufficient t3.micro capacity in the Availability Zone you requested.",
                        );
                    }
                    if action == "DescribeInstances" && f.pending_not_found > 0 {
                        f.pending_not_found -= 1;
                        return ec2_error(
                            "InvalidInstanceID.NotFound",
                            "The instance ID does not exist",
                        );
                    }
                }
                let mut request = http.request(
                    reqwest::Method::from_bytes(method.as_str().as_bytes()).unwrap(),
                    format!("{upstream}{uri}"),
                );
                // The Host header stays (the signature covers it); the length is the body's.
                for (name, value) in headers.iter().filter(|(n, _)| *n != "content-length") {
                    request = request.header(name.as_str(), value.as_bytes());
                }
                let mut body = body.to_vec();
                if faults.lock().unwrap().tamper {
                    body.extend_from_slice(b"&DryRun=false");
                }
                let answer = request.body(body).send().await.unwrap();
                let status = answer.status().as_u16();
                let content_type = answer
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("text/xml")
                    .to_string();
                let text = answer.text().await.unwrap();
                if action == "RunInstances" && status == 200 {
                    let mut f = faults.lock().unwrap();
                    if let Some(token) = token {
                        f.by_token.insert(token, text.clone());
                    }
                    f.pending_not_found = f.not_found_after_run;
                }
                (
                    axum::http::StatusCode::from_u16(status).unwrap(),
                    [("content-type", content_type)],
                    text,
                )
                    .into_response()
            }
        };
        let app = axum::Router::new().fallback(handler);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Ec2Proxy {
            url: format!("http://{addr}"),
            faults,
            task,
        }
    }

    /// How many requests of `action` it saw.
    pub fn seen(&self, action: &str) -> u32 {
        self.faults
            .lock()
            .unwrap()
            .seen
            .get(action)
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for Ec2Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

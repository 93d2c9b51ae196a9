//! The methods of supervisord's `supervisor` and `system` namespaces that clients use, each
//! mapped to the control request it stands for. Names are supervisord's namespecs: `name`,
//! `group:name`, or `group:*` for a whole group (a program outside any group is a group of
//! its own name, as in supervisord).
//!
//! Why this file is past 600 lines: one `match` maps every method to its control request, beside
//! the group and result conventions they share; the requests themselves are answered by the
//! daemon's verb modules (`daemon/requests/`), so an arm here is translation only.

use std::sync::Arc;

use dxr::{Fault, MethodCall, Value};
use supervisor_proto::{
    ActionResult, Body, ErrorBody, ErrorKind, Failure, Outcome, ProgramInfo, Reply, Request, Stream,
};

use super::faults::Code;
use super::help::METHODS;
use super::info::{config_info, process_info_into};
use super::logs;
use super::names::{group_of, members, one_program, running, split};
use super::write::{Answer, strukt};
use crate::config::Config;
use crate::control::Shared;
use crate::control::audit::Peer;

/// supervisord's `API_VERSION`, which supervisorctl checks before every command.
pub const API_VERSION: &str = "3.0";

/// Answers one call's body with a response or a fault, as XML.
pub async fn handle(shared: &Shared, peer: &Peer, body: &[u8]) -> String {
    let result = match std::str::from_utf8(body)
        .ok()
        .and_then(|text| MethodCall::from_xml(text).ok())
    {
        None => Err(Fault::new(
            Code::IncorrectParameters.number(),
            "INCORRECT_PARAMETERS: the body is not an XML-RPC methodCall".into(),
        )),
        Some(call) if call.name == "system.multicall" => multicall(shared, peer, call.params).await,
        Some(call) => call_one(shared, peer, &call.name, call.params).await,
    };
    match result {
        Ok(value) => super::write::response(&value),
        Err(fault) => super::write::fault(&fault),
    }
}

async fn multicall(shared: &Shared, peer: &Peer, params: Vec<Value>) -> Result<Answer, Fault> {
    let calls = dxr::multicall::from_multicall_params(params)
        .map_err(|e| Code::IncorrectParameters.fault(e.to_string()))?;
    let mut results = Vec::with_capacity(calls.len());
    for call in calls {
        results.push(match call {
            Err(e) => Err(Code::IncorrectParameters.fault(e.to_string())),
            Ok((name, _)) if name == "system.multicall" => Err(Code::IncorrectParameters
                .fault("system.multicall cannot be called inside system.multicall")),
            Ok((name, params)) => call_one(shared, peer, &name, params).await,
        });
    }
    Ok(super::write::multicall(&results))
}

/// The parameters of a call, taken in order.
struct Params {
    values: std::vec::IntoIter<Value>,
}

impl Params {
    fn string(&mut self) -> Result<String, Fault> {
        match self.values.next() {
            Some(Value::String(s)) => Ok(s),
            _ => Err(Code::IncorrectParameters.fault("")),
        }
    }

    fn int(&mut self) -> Result<i64, Fault> {
        match self.values.next() {
            Some(Value::Integer(n)) => Ok(i64::from(n)),
            _ => Err(Code::IncorrectParameters.fault("")),
        }
    }

    /// An optional boolean (`wait`), true when left out.
    fn wait(&mut self) -> Result<bool, Fault> {
        match self.values.next() {
            None => Ok(true),
            Some(Value::Boolean(b)) => Ok(b),
            Some(Value::Integer(n)) => Ok(n != 0),
            _ => Err(Code::IncorrectParameters.fault("")),
        }
    }

    /// A signal: a name (`HUP`, `SIGHUP`) or its number, as a string or an int.
    fn signal(&mut self) -> Result<String, Fault> {
        let text = match self.values.next() {
            Some(Value::String(s)) => s,
            Some(Value::Integer(n)) => n.to_string(),
            _ => return Err(Code::IncorrectParameters.fault("")),
        };
        crate::config::units::parse_signal(&text)
            .map(|s| s.as_str().trim_start_matches("SIG").to_owned())
            .map_err(|_| Code::BadSignal.fault(text))
    }

    fn done(&mut self) -> Result<(), Fault> {
        match self.values.next() {
            None => Ok(()),
            Some(_) => Err(Code::IncorrectParameters.fault("")),
        }
    }
}

async fn call_one(
    shared: &Shared,
    peer: &Peer,
    name: &str,
    params: Vec<Value>,
) -> Result<Answer, Fault> {
    let mut p = Params {
        values: params.into_iter(),
    };
    let ctx = Ctx { shared, peer };
    let value = match name {
        "supervisor.getAPIVersion" | "supervisor.getVersion" => {
            p.done()?;
            Value::String(API_VERSION.into())
        }
        "supervisor.getSupervisorVersion" => {
            p.done()?;
            Value::String(env!("CARGO_PKG_VERSION").into())
        }
        "supervisor.getIdentification" => {
            p.done()?;
            Value::String("supervisor".into())
        }
        "supervisor.getPID" => {
            p.done()?;
            Value::Integer(std::process::id() as i32)
        }
        "supervisor.getState" => {
            p.done()?;
            let (shutting_down, _) = ctx.status(Vec::new()).await?;
            let (code, name) = match shutting_down {
                true => (-1, "SHUTDOWN"),
                false => (1, "RUNNING"),
            };
            strukt([
                ("statecode", Value::Integer(code)),
                ("statename", Value::String(name.into())),
            ])
        }
        "supervisor.restart" => {
            p.done()?;
            ctx.ask(Request::Reload).await?;
            Value::Boolean(true)
        }
        "supervisor.shutdown" => {
            p.done()?;
            ctx.ask(Request::Shutdown).await?;
            Value::Boolean(true)
        }
        "supervisor.reloadConfig" => {
            p.done()?;
            // The grant, and the file's errors as CANT_REREAD.
            ctx.ask(Request::Reread).await?;
            let file = ctx.read_file().await.ok_or_else(|| {
                Code::CantReread.fault("the configuration file cannot be read again")
            })?;
            let (added, changed, removed) = group_changes(&ctx.config(), &file);
            Value::Array(vec![Value::Array(vec![
                strings(added),
                strings(changed),
                strings(removed),
            ])])
        }
        "supervisor.addProcessGroup" | "supervisor.removeProcessGroup" => {
            let add = name == "supervisor.addProcessGroup";
            let name = p.string()?;
            p.done()?;
            let request = match name.as_str() {
                _ if add => Request::Add { name },
                _ => Request::Remove { name },
            };
            ctx.ask(request).await?;
            Value::Boolean(true)
        }
        "supervisor.readLog" | "supervisor.readMainLog" => {
            let (_offset, _length) = (p.int()?, p.int()?);
            p.done()?;
            return Err(
                Code::NoFile.fault("the supervisor logs to stderr (docker logs), not to a file")
            );
        }
        "supervisor.getAllConfigInfo" => {
            p.done()?;
            // Behind the `status` grant, as what it tells is what `status` tells and more.
            ctx.status(Vec::new()).await?;
            // What runs (`inuse`), and what the file has beside it (`avail`, for `add`).
            let (running, file) = (ctx.config(), ctx.read_file().await);
            let mut infos: Vec<(String, Value)> = running
                .programs
                .iter()
                .map(|p| (p.name.to_string(), config_info(p, true)))
                .collect();
            // A program of a group in use is in use, as supervisord counts it.
            for p in file.iter().flat_map(|f| f.programs.iter()) {
                if running.program(p.name.as_str()).is_none() {
                    let inuse = running.programs.iter().any(|r| group_of(r) == group_of(p));
                    infos.push((p.name.to_string(), config_info(p, inuse)));
                }
            }
            infos.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Array(infos.into_iter().map(|(_, v)| v).collect())
        }
        "supervisor.getProcessInfo" => {
            let spec = p.string()?;
            p.done()?;
            let config = ctx.config();
            let names = one_program(&config, &spec)?;
            let (_, programs) = ctx.status(names).await?;
            let info = programs.first().ok_or_else(|| Code::BadName.fault(&spec))?;
            let mut xml = String::with_capacity(1024);
            process_info_into(&mut xml, config.program(&info.name), info, unix_now());
            return Ok(Answer::Xml(xml));
        }
        "supervisor.getAllProcessInfo" => {
            p.done()?;
            let config = ctx.config();
            let (_, programs) = ctx.status(Vec::new()).await?;
            // One look-up each, not a search of the list per program.
            let by_name: std::collections::HashMap<&str, &crate::config::ProgramConfig> = config
                .programs
                .iter()
                .map(|p| (p.name.as_str(), p))
                .collect();
            let now = unix_now();
            let mut xml = String::with_capacity(1100 * programs.len() + 64);
            xml.push_str("<value><array><data>");
            for i in &programs {
                process_info_into(&mut xml, by_name.get(i.name.as_str()).copied(), i, now);
            }
            xml.push_str("</data></array></value>");
            return Ok(Answer::Xml(xml));
        }
        "supervisor.startProcess" | "supervisor.stopProcess" => {
            let spec = p.string()?;
            let _wait = p.wait()?;
            p.done()?;
            let start = name == "supervisor.startProcess";
            let config = ctx.config();
            match split(&spec) {
                // `group:*`: the group's form, as supervisord answers it.
                (group, None) => ctx.group_action(&config, Some(&group), start).await?,
                _ => {
                    let names = one_program(&config, &spec)?;
                    let request = match start {
                        true => Request::Start { names },
                        false => Request::Stop { names },
                    };
                    single_result(ctx.actions(request).await?, start)?
                }
            }
        }
        "supervisor.startProcessGroup" | "supervisor.stopProcessGroup" => {
            let group = p.string()?;
            let _wait = p.wait()?;
            p.done()?;
            let config = ctx.config();
            let start = name == "supervisor.startProcessGroup";
            ctx.group_action(&config, Some(&group), start).await?
        }
        "supervisor.startAllProcesses" | "supervisor.stopAllProcesses" => {
            let _wait = p.wait()?;
            p.done()?;
            let config = ctx.config();
            let start = name == "supervisor.startAllProcesses";
            ctx.group_action(&config, None, start).await?
        }
        "supervisor.signalProcess" => {
            let spec = p.string()?;
            let signal = p.signal()?;
            p.done()?;
            let config = ctx.config();
            match split(&spec) {
                (group, None) => ctx.group_signal(&config, Some(&group), signal).await?,
                _ => {
                    let names = one_program(&config, &spec)?;
                    let reply = ctx.actions(Request::Signal { signal, names }).await?;
                    single_result(reply, false)?
                }
            }
        }
        "supervisor.signalProcessGroup" => {
            let group = p.string()?;
            let signal = p.signal()?;
            p.done()?;
            let config = ctx.config();
            ctx.group_signal(&config, Some(&group), signal).await?
        }
        "supervisor.signalAllProcesses" => {
            let signal = p.signal()?;
            p.done()?;
            let config = ctx.config();
            ctx.group_signal(&config, None, signal).await?
        }
        "supervisor.readProcessStdoutLog"
        | "supervisor.readProcessLog"
        | "supervisor.readProcessStderrLog"
        | "supervisor.tailProcessStdoutLog"
        | "supervisor.tailProcessLog"
        | "supervisor.tailProcessStderrLog" => {
            let spec = p.string()?;
            let (offset, length) = (p.int()?, p.int()?);
            p.done()?;
            let stream = match name.contains("Stderr") {
                true => Stream::Stderr,
                false => Stream::Stdout,
            };
            let tail = name.starts_with("supervisor.tail");
            ctx.log(&spec, stream, tail, offset, length).await?
        }
        "supervisor.clearProcessLogs" | "supervisor.clearProcessLog" => {
            let spec = p.string()?;
            p.done()?;
            let config = ctx.config();
            let names = one_program(&config, &spec)?;
            single_result(ctx.actions(Request::Clear { names }).await?, false)?
        }
        "supervisor.clearAllProcessLogs" => {
            p.done()?;
            let config = ctx.config();
            let names: Vec<String> = config.programs.iter().map(|p| p.name.to_string()).collect();
            if names.is_empty() {
                Value::Array(Vec::new())
            } else {
                let results = ctx.actions(Request::Clear { names }).await?;
                results_array(&config, &results, false)
            }
        }
        "system.listMethods" => {
            p.done()?;
            strings(
                METHODS
                    .iter()
                    .map(|(name, ..)| (*name).to_owned())
                    .collect(),
            )
        }
        "system.methodHelp" | "system.methodSignature" => {
            let asked = p.string()?;
            p.done()?;
            let (_, signature, help) = METHODS
                .iter()
                .find(|(n, ..)| *n == asked)
                .ok_or_else(|| Code::UnknownMethod.fault(""))?;
            match name {
                "system.methodHelp" => Value::String((*help).to_owned()),
                _ => Value::Array(vec![strings(
                    signature.iter().map(|s| (*s).to_owned()).collect(),
                )]),
            }
        }
        _ => return Err(Code::UnknownMethod.fault("")),
    };
    Ok(Answer::Value(value))
}

/// Who asks, and where requests go.
struct Ctx<'a> {
    shared: &'a Shared,
    peer: &'a Peer,
}

impl Ctx<'_> {
    fn config(&self) -> Arc<Config> {
        self.shared.config.borrow().clone()
    }

    /// The configuration file as it is now, read off the actor's thread; `None` when it
    /// cannot be read or has errors.
    async fn read_file(&self) -> Option<Arc<Config>> {
        let path = self.config().path.clone();
        tokio::task::spawn_blocking(move || crate::config::load(&path).ok().map(Arc::new))
            .await
            .ok()
            .flatten()
    }

    async fn ask(&self, request: Request) -> Result<Reply, Fault> {
        match crate::control::answer(self.shared, self.peer, None, request).await {
            Body::Ok(reply) => Ok(reply),
            Body::Error(e) => Err(fault_of(&e)),
            Body::Event(_) => Err(Code::Failed.fault("an event where an answer was due")),
        }
    }

    async fn status(&self, names: Vec<String>) -> Result<(bool, Vec<ProgramInfo>), Fault> {
        match self.ask(Request::Status { names }).await? {
            Reply::Status {
                supervisor,
                programs,
            } => Ok((supervisor.shutting_down, programs)),
            other => Err(unexpected(&other)),
        }
    }

    async fn actions(&self, request: Request) -> Result<Vec<ActionResult>, Fault> {
        match self.ask(request).await? {
            Reply::Actions { results } => Ok(results),
            other => Err(unexpected(&other)),
        }
    }

    /// supervisord's `start/stopProcessGroup` and `start/stopAllProcesses`: each member that
    /// is not running (start) or is running (stop), with one result struct each.
    async fn group_action(
        &self,
        config: &Config,
        group: Option<&str>,
        start: bool,
    ) -> Result<Value, Fault> {
        let members = members(config, group)?;
        let (_, programs) = self.status(Vec::new()).await?;
        let names: Vec<String> = programs
            .iter()
            .filter(|p| members.contains(&p.name))
            .filter(|p| running(p.state) != start)
            .map(|p| p.name.clone())
            .collect();
        if names.is_empty() {
            return Ok(Value::Array(Vec::new()));
        }
        let request = match start {
            true => Request::Start { names },
            false => Request::Stop { names },
        };
        let results = self.actions(request).await?;
        Ok(results_array(config, &results, start))
    }

    async fn group_signal(
        &self,
        config: &Config,
        group: Option<&str>,
        signal: String,
    ) -> Result<Value, Fault> {
        let members = members(config, group)?;
        let (_, programs) = self.status(Vec::new()).await?;
        let names: Vec<String> = programs
            .iter()
            .filter(|p| members.contains(&p.name) && running(p.state))
            .map(|p| p.name.clone())
            .collect();
        if names.is_empty() {
            return Ok(Value::Array(Vec::new()));
        }
        let results = self.actions(Request::Signal { signal, names }).await?;
        Ok(results_array(config, &results, false))
    }

    /// A log read: the grant and the file's path from a `tail` request of no lines, the bytes
    /// read on a blocking thread.
    async fn log(
        &self,
        spec: &str,
        stream: Stream,
        tail: bool,
        offset: i64,
        length: i64,
    ) -> Result<Value, Fault> {
        let config = self.config();
        let name = one_program(&config, spec)?.remove(0);
        let request = Request::Tail {
            name,
            stream,
            lines: 0,
        };
        let path = match crate::control::answer(self.shared, self.peer, None, request).await {
            Body::Ok(Reply::Tail { path, .. }) => std::path::PathBuf::from(path),
            // No file kept (`NONE`, or stderr sent to stdout): supervisord's NO_FILE.
            Body::Error(e) if e.kind == ErrorKind::BadRequest => {
                return Err(Code::NoFile.fault(spec));
            }
            Body::Error(e) => return Err(fault_of(&e)),
            Body::Ok(other) => return Err(unexpected(&other)),
            Body::Event(_) => return Err(Code::Failed.fault("an event where an answer was due")),
        };
        let read = tokio::task::spawn_blocking(move || match tail {
            true => logs::tail(&path, offset, length).map(|(data, offset, overflow)| {
                Value::Array(vec![
                    Value::String(String::from_utf8_lossy(&data).into_owned()),
                    Value::Integer(i32::try_from(offset).unwrap_or(i32::MAX)),
                    Value::Boolean(overflow),
                ])
            }),
            false => logs::read(&path, offset, length)
                .map(|data| Value::String(String::from_utf8_lossy(&data).into_owned())),
        })
        .await;
        match read {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(code)) => Err(code.fault(spec)),
            Err(e) => Err(Code::Failed.fault(format!("reading the log: {e}"))),
        }
    }
}

fn strings(items: Vec<String>) -> Value {
    Value::Array(items.into_iter().map(Value::String).collect())
}

/// Unix seconds now.
fn unix_now() -> i64 {
    (crate::status::unix_ms(std::time::SystemTime::now()) / 1000) as i64
}

fn unexpected(reply: &Reply) -> Fault {
    Code::Failed.fault(format!("unexpected answer from the supervisor: {reply:?}"))
}

/// `reloadConfig`'s answer: groups added, changed and removed between what runs and the file,
/// as supervisord compares them (a group whose programs differ in number or in any setting is
/// changed), each in the order of the file or of what runs.
fn group_changes(running: &Config, file: &Config) -> (Vec<String>, Vec<String>, Vec<String>) {
    let groups = |c: &Config| {
        let mut g: Vec<String> = Vec::new();
        for p in &c.programs {
            if !g.iter().any(|x| x == group_of(p)) {
                g.push(group_of(p).to_owned());
            }
        }
        g
    };
    let members = |c: &Config, g: &str| -> Vec<crate::config::ProgramConfig> {
        let mut m: Vec<_> = c
            .programs
            .iter()
            .filter(|p| group_of(p) == g)
            .cloned()
            .collect();
        m.sort_by(|a, b| a.name.cmp(&b.name));
        m
    };
    let (now, then) = (groups(running), groups(file));
    let added = then.iter().filter(|g| !now.contains(g)).cloned().collect();
    let removed = now.iter().filter(|g| !then.contains(g)).cloned().collect();
    let changed = now
        .iter()
        .filter(|g| then.contains(g) && members(running, g) != members(file, g))
        .cloned()
        .collect();
    (added, changed, removed)
}

/// Our error as the fault supervisord would give.
fn fault_of(e: &ErrorBody) -> Fault {
    let code = match e.kind {
        ErrorKind::UnknownProgram => Code::BadName,
        ErrorKind::AlreadyAdded => Code::AlreadyAdded,
        ErrorKind::StillRunning => Code::StillRunning,
        ErrorKind::BadConfig => Code::CantReread,
        ErrorKind::ShuttingDown => Code::ShutdownState,
        ErrorKind::BadRequest => Code::BadArguments,
        _ => Code::Failed,
    };
    code.fault(&e.message)
}

/// The fault code of one action's result; `SUCCESS` for what succeeded.
fn code_of(result: &ActionResult, start: bool) -> Code {
    match result.outcome {
        Outcome::Started | Outcome::Stopped | Outcome::Signalled | Outcome::Cleared => {
            Code::Success
        }
        Outcome::AlreadyStarted => Code::AlreadyStarted,
        Outcome::NotRunning => Code::NotRunning,
        Outcome::Failed => match result.failure {
            Some(Failure::NotRunning) => Code::NotRunning,
            Some(Failure::AbnormalTermination) => Code::AbnormalTermination,
            _ if start => Code::SpawnError,
            _ => Code::Failed,
        },
    }
}

/// `startProcess`'s `true`, or the fault of its one result.
fn single_result(results: Vec<ActionResult>, start: bool) -> Result<Value, Fault> {
    let Some(result) = results.into_iter().next() else {
        return Err(Code::Failed.fault("no result"));
    };
    match code_of(&result, start) {
        Code::Success => Ok(Value::Boolean(true)),
        code => Err(code.fault(detail(&result))),
    }
}

/// What an action's message says past `ERROR (...)`.
fn detail(result: &ActionResult) -> String {
    let m = result.message.as_str();
    let inner = m
        .strip_prefix("ERROR (")
        .and_then(|m| m.strip_suffix(')'))
        .unwrap_or(m);
    format!("{}: {inner}", result.name)
}

/// The results of a group's or everyone's action, as supervisord's `make_allfunc` gives them.
fn results_array(config: &Config, results: &[ActionResult], start: bool) -> Value {
    Value::Array(
        results
            .iter()
            .map(|r| {
                let group = config
                    .program(&r.name)
                    .map_or(r.name.clone(), |p| group_of(p).to_owned());
                let code = code_of(r, start);
                let description = match code {
                    Code::Success => "OK".to_owned(),
                    _ => code.fault(detail(r)).string().to_owned(),
                };
                strukt([
                    ("name", Value::String(r.name.clone())),
                    ("group", Value::String(group)),
                    ("status", Value::Integer(code.number())),
                    ("description", Value::String(description)),
                ])
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(failure: Failure, message: &str) -> ActionResult {
        ActionResult {
            name: "db".into(),
            outcome: Outcome::Failed,
            failure: Some(failure),
            message: message.into(),
        }
    }

    #[test]
    fn a_fault_follows_why_the_action_failed_not_its_words() {
        // A FATAL program's reason is its own last words, which may say anything.
        let fatal = failed(Failure::Other, "ERROR (waiting: postgres not running)");
        assert_eq!(code_of(&fatal, true), Code::SpawnError);
        assert_eq!(code_of(&fatal, false), Code::Failed);
        let died = failed(
            Failure::AbnormalTermination,
            "ERROR (abnormal termination: exit 3)",
        );
        assert_eq!(code_of(&died, true), Code::AbnormalTermination);
        let idle = failed(Failure::NotRunning, "ERROR (not running)");
        assert_eq!(code_of(&idle, false), Code::NotRunning);
        let spawn = failed(Failure::SpawnError, "ERROR (spawn error: not found)");
        assert_eq!(code_of(&spawn, true), Code::SpawnError);
    }
}

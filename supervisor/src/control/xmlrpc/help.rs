//! The methods served, with their signatures and help, for `system.listMethods`,
//! `system.methodHelp` and `system.methodSignature`.

/// Every method served: name, signature (return type first), help.
pub const METHODS: &[(&str, &[&str], &str)] = &[
    (
        "supervisor.getAPIVersion",
        &["string"],
        "The version of the RPC API used by supervisord (3.0).",
    ),
    (
        "supervisor.getVersion",
        &["string"],
        "The version of the RPC API (deprecated: getAPIVersion).",
    ),
    (
        "supervisor.getSupervisorVersion",
        &["string"],
        "This supervisor's version.",
    ),
    (
        "supervisor.getIdentification",
        &["string"],
        "The identifying string of this supervisor.",
    ),
    (
        "supervisor.getState",
        &["struct"],
        "The supervisor's state: statecode and statename.",
    ),
    ("supervisor.getPID", &["int"], "The supervisor's pid."),
    (
        "supervisor.shutdown",
        &["boolean"],
        "Stop every program and exit.",
    ),
    (
        "supervisor.readLog",
        &["string", "int", "int"],
        "The supervisor's own log: it has none (it logs to stderr, which docker logs shows): NO_FILE.",
    ),
    (
        "supervisor.getAllConfigInfo",
        &["array"],
        "Every program's settings, as supervisord names them: those the supervisor has (inuse) and those the file has beside them (for addProcessGroup).",
    ),
    (
        "supervisor.restart",
        &["boolean"],
        "Restart every program with the configuration file as it is now (the supervisor itself stays).",
    ),
    (
        "supervisor.reloadConfig",
        &["array"],
        "Read the configuration again: [[added, changed, removed]]; nothing is applied.",
    ),
    (
        "supervisor.addProcessGroup",
        &["boolean", "string"],
        "Add a group (or a program) from the configuration file that the supervisor does not have yet.",
    ),
    (
        "supervisor.removeProcessGroup",
        &["boolean", "string"],
        "Drop a stopped group (or program) from the supervisor.",
    ),
    (
        "supervisor.getProcessInfo",
        &["struct", "string"],
        "A program's state, as supervisord reports it.",
    ),
    (
        "supervisor.getAllProcessInfo",
        &["array"],
        "Every program's state.",
    ),
    (
        "supervisor.startProcess",
        &["boolean", "string", "boolean"],
        "Start a program (name, or group:* for a group) and wait until it is RUNNING.",
    ),
    (
        "supervisor.startProcessGroup",
        &["array", "string", "boolean"],
        "Start every program of a group that is not running.",
    ),
    (
        "supervisor.startAllProcesses",
        &["array", "boolean"],
        "Start every program that is not running.",
    ),
    (
        "supervisor.stopProcess",
        &["boolean", "string", "boolean"],
        "Stop a program and wait until it has stopped.",
    ),
    (
        "supervisor.stopProcessGroup",
        &["array", "string", "boolean"],
        "Stop every running program of a group.",
    ),
    (
        "supervisor.stopAllProcesses",
        &["array", "boolean"],
        "Stop every running program.",
    ),
    (
        "supervisor.signalProcess",
        &["boolean", "string", "string"],
        "Send a signal (name or number) to a program.",
    ),
    (
        "supervisor.signalProcessGroup",
        &["array", "string", "string"],
        "Send a signal to every running program of a group.",
    ),
    (
        "supervisor.signalAllProcesses",
        &["array", "string"],
        "Send a signal to every running program.",
    ),
    (
        "supervisor.readProcessStdoutLog",
        &["string", "string", "int", "int"],
        "Bytes of a program's stdout log: name, offset, length (a negative offset counts from the end).",
    ),
    (
        "supervisor.readProcessStderrLog",
        &["string", "string", "int", "int"],
        "Bytes of a program's stderr log: name, offset, length.",
    ),
    (
        "supervisor.readProcessLog",
        &["string", "string", "int", "int"],
        "As readProcessStdoutLog (deprecated name).",
    ),
    (
        "supervisor.tailProcessStdoutLog",
        &["array", "string", "int", "int"],
        "[bytes, offset, overflow]: the last bytes of a program's stdout log from offset on.",
    ),
    (
        "supervisor.tailProcessStderrLog",
        &["array", "string", "int", "int"],
        "[bytes, offset, overflow] of a program's stderr log.",
    ),
    (
        "supervisor.tailProcessLog",
        &["array", "string", "int", "int"],
        "As tailProcessStdoutLog (deprecated name).",
    ),
    (
        "supervisor.clearProcessLogs",
        &["boolean", "string"],
        "Empty a program's log files and delete their rotated backups.",
    ),
    (
        "supervisor.clearAllProcessLogs",
        &["array"],
        "Empty every program's log files: one result struct each.",
    ),
    (
        "system.listMethods",
        &["array"],
        "The methods this server knows.",
    ),
    (
        "system.methodHelp",
        &["string", "string"],
        "A method's help.",
    ),
    (
        "system.methodSignature",
        &["array", "string"],
        "A method's signature: return type, then parameter types.",
    ),
    (
        "system.multicall",
        &["array", "array"],
        "Several calls in one: [{methodName, params}, ...] gives [[result] or fault struct, ...].",
    ),
];

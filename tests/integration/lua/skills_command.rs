//! `swdl skills` on Lua skills.
use super::*;

/// The built-in skills' entries in `swdl skills list --format json`, which open every list.
const BUILTINS_JSON: &str = r#"
  {
    "name": "echo",
    "source": "builtin",
    "description": "Return the inputs as outputs",
    "tokens": 0
  },
  {
    "name": "sleep",
    "source": "builtin",
    "description": "Wait `ms` milliseconds",
    "tokens": 0
  },
  {
    "name": "fail",
    "source": "builtin",
    "description": "Fail, or fail the first `times` attempts (for testing recovery)",
    "tokens": 0
  },
  {
    "name": "shell",
    "source": "builtin",
    "description": "Run a shell script; outputs stdout, stderr, exit_code and $SWDL_OUTPUT lines",
    "tokens": 0
  },
  {
    "name": "http",
    "source": "builtin",
    "description": "Call an HTTP endpoint: url, method, headers, body or json; outputs status, headers, body, json",
    "tokens": 0
  },
  {
    "name": "llm",
    "source": "builtin",
    "description": "Ask a language model (OpenAI-compatible): prompt, system, json; outputs text, json, usage",
    "tokens": 0
  },
"#;

#[test]
fn skills_list_and_show_describe_a_lua_skill_folder() {
  let p = Project::new();
  p.file(
    "skills/my-skill/init.lua",
    "return {\n  description = \"Says hi\",\n  run = function(ctx, input) return { said = swdl.exec(\"echo\", { \"hi\" }).stdout } end,\n}\n",
  );
  p.file(
    "skills/my-skill/skill.yaml",
    "description: Says hi\ndomains: [testing]\nrisk: high\ntokens: 42\npermissions: [exec]\ninputs:\n  who: { type: string, required: false, description: whom to greet }\noutputs:\n  said: string\n",
  );
  p.skill("loose", "return { run = function() return {} end }\n");
  let my_skill = r#"
    "name": "my-skill",
    "source": "skills/my-skill/init.lua",
    "description": "Says hi",
    "domains": [
      "testing"
    ],
    "risk": "high",
    "tokens": 42,
    "permissions": [
      "exec"
    ],
    "inputs": {
      "who": "string"
    },
    "outputs": {
      "said": "string"
    }
  "#;
  let list = format!(
    r#"[{BUILTINS_JSON}  {{
    "name": "loose",
    "source": "skills/loose.lua",
    "tokens": 0
  }},
  {{
    {}
  }}
]
"#,
    my_skill.trim()
  );
  p.swdl(["skills", "list", "--skills", "skills", "--format", "json"])
    .stdout(&list)
    .stderr("")
    .status(0)
    .run();
  p.swdl(["skills", "list", "--skills", "skills"])
    .stdout(
      "
      NAME      TOKENS  DOMAINS                   DESCRIPTION
      echo           0                            Return the inputs as outputs
      sleep          0                            Wait `ms` milliseconds
      fail           0                            Fail, or fail the first `times` attempts (for testing recovery)
      shell          0                            Run a shell script; outputs stdout, stderr, exit_code and $SWDL_OUTPUT lines
      http           0                            Call an HTTP endpoint: url, method, headers, body or json; outputs status, headers, body, json
      llm            0                            Ask a language model (OpenAI-compatible): prompt, system, json; outputs text, json, usage
      loose          0[..]
      my-skill      42  testing                   Says hi

      8 skills, 42 tokens
      ",
    )
    .stderr("")
    .status(0)
    .run();
  p.swdl([
    "skills", "show", "my-skill", "--skills", "skills", "--format", "json",
  ])
  .stdout(&format!(
    "{{\n{}}}\n",
    crate::test::unindent(my_skill)
      .lines()
      .map(|l| format!("  {l}\n"))
      .collect::<String>()
  ))
  .stderr("")
  .status(0)
  .run();
  p.swdl(["skills", "show", "my-skill", "--skills", "skills"])
    .stdout(
      r#"
      my-skill
        source       skills/my-skill/init.lua
        description  Says hi
        domains      testing
        languages    -
        tokens       42
        risk         high
        permissions  exec
        inputs       who: string
        outputs      said: string

      return {
        description = "Says hi",
        run = function(ctx, input) return { said = swdl.exec("echo", { "hi" }).stdout } end,
      }

      "#,
    )
    .stderr("")
    .status(0)
    .run();
  p.swdl(["skills", "show", "my-skil", "--skills", "skills"])
    .stdout("")
    .stderr("error: unknown skill `my-skil`, did you mean `my-skill`?\n")
    .status(2)
    .run();
}

#[test]
fn skills_list_and_show_read_a_one_file_skills_own_table() {
  let p = Project::new();
  p.skill(
    "word-count",
    "return {\n  description = \"Count the words\",\n  inputs = { text = \"string\" },\n  outputs = { words = \"integer\" },\n  run = function() return { words = 0 } end,\n}\n",
  );
  let word_count = r#"
    "name": "word-count",
    "source": "skills/word-count.lua",
    "description": "Count the words",
    "tokens": 0,
    "inputs": {
      "text": "string"
    },
    "outputs": {
      "words": "integer"
    }
  "#;
  p.swdl([
    "skills",
    "show",
    "word-count",
    "--skills",
    "skills",
    "--format",
    "json",
  ])
  .stdout(&format!(
    "{{\n{}}}\n",
    crate::test::unindent(word_count)
      .lines()
      .map(|l| format!("  {l}\n"))
      .collect::<String>()
  ))
  .stderr("")
  .status(0)
  .run();
  p.swdl(["skills", "list", "--skills", "skills"])
    .stdout(
      "
      NAME        TOKENS  DOMAINS                   DESCRIPTION
      ...
      word-count       0                            Count the words

      7 skills, 0 tokens
      ",
    )
    .stderr("")
    .status(0)
    .run();
  // A skill that does not load is still listed, marked broken with Lua's reason.
  p.skill("broken", "return {\n  description = = 1\n}\n");
  let list = format!(
    r#"[{BUILTINS_JSON}  {{
    "name": "broken",
    "source": "skills/broken.lua",
    "tokens": 0,
    "broken": "skills/broken.lua:2: unexpected symbol near '='"
  }},
  {{
    {}
  }}
]
"#,
    word_count.trim()
  );
  p.swdl(["skills", "list", "--skills", "skills", "--format", "json"])
    .stdout(&list)
    .stderr("")
    .status(0)
    .run();
}

#[test]
fn a_skill_that_does_not_load_is_listed_as_broken_with_the_reason() {
  Test::new()
    .skill("broken.lua", "return {\n")
    .skill(
      "ok.lua",
      r#"return { description = "fine", run = function() end }"#,
    )
    .args(["skills", "list"])
    .stdout(
      "
      NAME    TOKENS  DOMAINS                   DESCRIPTION
      echo         0                            Return the inputs as outputs
      sleep        0                            Wait `ms` milliseconds
      fail         0                            Fail, or fail the first `times` attempts (for testing recovery)
      shell        0                            Run a shell script; outputs stdout, stderr, exit_code and $SWDL_OUTPUT lines
      http         0                            Call an HTTP endpoint: url, method, headers, body or json; outputs status, headers, body, json
      llm          0                            Ask a language model (OpenAI-compatible): prompt, system, json; outputs text, json, usage
      broken       0                            broken: skills/broken.lua:2: [..]
      ok           0                            fine

      8 skills, 0 tokens
      ",
    )
    .stderr("")
    .status(0)
    .run()
    .then()
    .args(["skills", "show", "broken"])
    .stdout(
      "
      broken
        source       skills/broken.lua
        broken       skills/broken.lua:2: [..]
        domains      -
        languages    -
        tokens       0

      return {

      ",
    )
    .stderr("")
    .status(0)
    .run();
}

//! `swdl skills`: the registry of built-in and discovered skills.
use crate::test::Test;

/// A directory with three discovered skills under `lib/`: a bare Lua file, and two directory
/// skills with metadata.
fn fixture() -> Test {
  Test::new()
    .file(
      "lib/word-count.lua",
      "return { description = 'Count words', run = function() return {} end }\n",
    )
    .file(
      "lib/review/init.lua",
      "return { run = function() return {} end }\n",
    )
    .file(
      "lib/review/skill.yaml",
      r"
      description: Review code for style
      domains: [code-quality, review]
      languages: [python, rust]
      risk: low
      tokens: 300
      inputs: { text: string }
      outputs: { findings: array }
      ",
    )
    .file(
      "lib/deploy/init.lua",
      "return { run = function() return {} end }\n",
    )
    .file(
      "lib/deploy/skill.yaml",
      r"
      domains: [ops]
      tokens: 900
      permissions: [exec, net]
      ",
    )
}

/// `swdl skills ARGS --skills lib` in the fixture.
fn skills<const N: usize>(args: [&str; N]) -> Test {
  fixture()
    .args(["skills"])
    .args(args)
    .args(["--skills", "lib"])
}

/// The names in a JSON list of skills.
fn names(list: &serde_json::Value) -> Vec<&str> {
  list
    .as_array()
    .map(|a| a.iter().filter_map(|s| s["name"].as_str()).collect())
    .unwrap_or_default()
}

#[test]
fn list_shows_built_ins_and_discovered_skills() {
  // deploy has no description: its row ends in the padding of the DOMAINS column.
  let pad = " ".repeat(23);
  skills([])
    .stdout(&format!(
      r"
      NAME        TOKENS  DOMAINS                   DESCRIPTION
      echo             0                            Return the inputs as outputs
      sleep            0                            Wait `ms` milliseconds
      fail             0                            Fail, or fail the first `times` attempts (for testing recovery)
      shell            0                            Run a shell script; outputs stdout, stderr, exit_code and $SWDL_OUTPUT lines
      http             0                            Call an HTTP endpoint: url, method, headers, body or json; outputs status, headers, body, json
      llm              0                            Ask a language model (OpenAI-compatible): prompt, system, json; outputs text, json, usage
      deploy         900  ops{pad}
      review         300  code-quality,review       Review code for style
      word-count       0                            Count words

      9 skills, 1200 tokens
      "
    ))
    .stderr("")
    .status(0)
    .run();
}

#[test]
fn list_selects_by_domain_and_token_budget() {
  skills(["list", "--domain", "review", "--format", "json"])
    .stdout(
      r#"
      [
        {
          "name": "review",
          "source": "lib/review/init.lua",
          "description": "Review code for style",
          "domains": [
            "code-quality",
            "review"
          ],
          "languages": [
            "python",
            "rust"
          ],
          "risk": "low",
          "tokens": 300,
          "inputs": {
            "text": "string"
          },
          "outputs": {
            "findings": "array"
          }
        }
      ]
      "#,
    )
    .stderr("")
    .status(0)
    .run();
  let out = skills(["list", "--max-tokens", "500", "--format", "json"])
    .stderr("")
    .status(0)
    .run();
  // Skills are taken in registry order while they fit: deploy (900) does not, review (300) does.
  assert_eq!(
    names(&out.json()),
    [
      "echo",
      "sleep",
      "fail",
      "shell",
      "http",
      "llm",
      "review",
      "word-count"
    ]
  );
}

#[test]
fn show_prints_metadata_inputs_outputs_and_source() {
  skills(["show", "review"])
    .stdout(
      r"
      review
        source       lib/review/init.lua
        description  Review code for style
        domains      code-quality, review
        languages    python, rust
        tokens       300
        risk         low
        inputs       text: string
        outputs      findings: array

      return { run = function() return {} end }

      ",
    )
    .stderr("")
    .status(0)
    .run();
  skills(["show", "deploy", "--format", "json"])
    .stdout(
      r#"
      {
        "name": "deploy",
        "source": "lib/deploy/init.lua",
        "domains": [
          "ops"
        ],
        "tokens": 900,
        "permissions": [
          "exec",
          "net"
        ]
      }
      "#,
    )
    .stderr("")
    .status(0)
    .run();
}

#[test]
fn unknown_skills_and_bad_metadata_exit_2() {
  skills(["show", "reveiw"])
    .stdout("")
    .stderr("error: unknown skill `reveiw`, did you mean `review`?\n")
    .status(2)
    .run();
  skills([])
    .file("lib/review/skill.yaml", "tokens: lots\n")
    .stdout("")
    .stderr(
      r"
      lib/review/skill.yaml:1:9: error: `tokens` must be a whole number, found a string
        |
      1 | tokens: lots
        |         ^^^^
      ",
    )
    .status(2)
    .run();
}

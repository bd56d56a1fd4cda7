//! The one decision about ANSI colour: `--color`, then `NO_COLOR` (set at all), then whether the
//! stream is a terminal (and not `TERM=dumb`). Everything that colours asks here.
use std::{io::IsTerminal, sync::OnceLock};

/// `--color` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub(crate) enum ColorChoice {
  /// Colour a terminal unless `NO_COLOR` is set or `TERM` is `dumb`.
  #[default]
  Auto,
  /// Always colour, even into a pipe.
  Always,
  /// Never colour.
  Never,
}

static CHOICE: OnceLock<ColorChoice> = OnceLock::new();

/// Records the command line's choice; the first call wins (the dispatcher makes it once).
pub(crate) fn choose(choice: ColorChoice) {
  let _ = CHOICE.set(choice);
}

/// Whether to colour text written to stderr.
pub(crate) fn stderr() -> bool {
  decide(std::io::stderr().is_terminal())
}

/// Whether to colour text written to stdout.
pub(crate) fn stdout() -> bool {
  decide(std::io::stdout().is_terminal())
}

fn decide(terminal: bool) -> bool {
  match CHOICE.get().copied().unwrap_or_default() {
    ColorChoice::Always => true,
    ColorChoice::Never => false,
    ColorChoice::Auto => {
      terminal
        && std::env::var_os("NO_COLOR").is_none()
        && std::env::var_os("TERM").is_none_or(|t| t != "dumb")
    }
  }
}

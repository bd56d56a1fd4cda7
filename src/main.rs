fn main() {
  std::process::exit(swdl::run(std::env::args_os()));
}

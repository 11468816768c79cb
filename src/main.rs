fn main() {
    std::process::exit(wstund::cli::main(std::env::args().collect()));
}

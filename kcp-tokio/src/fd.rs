//! The socket under a stream, listener, connector or endpoint, as Tokio's own socket types
//! expose it: `AsFd`/`AsRawFd` on Unix, `AsSocket`/`AsRawSocket` on Windows (socket options
//! through `socket2::SockRef`, `getsockopt`, a poller). A listener bound with several sockets
//! (`bind_reuseport`) exposes its first. Everything of a stream's socket is shared with the
//! other sessions on it (a listener's, a connector's, an endpoint's): set options that suit
//! them all, and do not read from or write to it.

use crate::{KcpConnector, KcpEndpoint, KcpListener, KcpStream};

#[cfg(unix)]
mod unix {
    use super::*;
    use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

    macro_rules! fd {
        ($t:ty) => {
            impl AsFd for $t {
                fn as_fd(&self) -> BorrowedFd<'_> {
                    self.driver().socket().as_fd()
                }
            }
            impl AsRawFd for $t {
                fn as_raw_fd(&self) -> RawFd {
                    self.as_fd().as_raw_fd()
                }
            }
        };
    }
    fd!(KcpStream);
    fd!(KcpListener);
    fd!(KcpConnector);
    fd!(KcpEndpoint);
}

#[cfg(windows)]
mod windows {
    use super::*;
    use std::os::windows::io::{AsRawSocket, AsSocket, BorrowedSocket, RawSocket};

    macro_rules! sock {
        ($t:ty) => {
            impl AsSocket for $t {
                fn as_socket(&self) -> BorrowedSocket<'_> {
                    self.driver().socket().as_socket()
                }
            }
            impl AsRawSocket for $t {
                fn as_raw_socket(&self) -> RawSocket {
                    self.as_socket().as_raw_socket()
                }
            }
        };
    }
    sock!(KcpStream);
    sock!(KcpListener);
    sock!(KcpConnector);
    sock!(KcpEndpoint);
}

//! The gRPC services: requests decoded into [`Log`] calls, answers encoded as the server's.

// `tonic::Status` is what every gRPC handler answers; boxing it in the helpers would only
// be unboxed again at the trait boundary.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};
use uuid::Uuid;

use crate::log::{Expected, Log, Proposed, Record, WriteOutcome};
use crate::proto::event_store::client::server_features::server_features_server::{
    ServerFeatures, ServerFeaturesServer,
};
use crate::proto::event_store::client::server_features::{SupportedMethod, SupportedMethods};
use crate::proto::event_store::client::streams::streams_server::{Streams, StreamsServer};
use crate::proto::event_store::client::streams::{
    AppendReq, AppendResp, BatchAppendReq, BatchAppendResp, DeleteReq, DeleteResp, ReadReq,
    ReadResp, TombstoneReq, TombstoneResp, append_req, append_resp, read_req, read_resp,
};
use crate::proto::event_store::client::{self as shared, StreamIdentifier};

/// The version the fake reports (the server line whose behaviour it follows).
const SERVER_VERSION: &str = "25.0.0";

pub(crate) fn router(log: Arc<Mutex<Log>>) -> tonic::transport::server::Router {
    tonic::transport::Server::builder()
        .add_service(StreamsServer::new(StreamsService { log }))
        .add_service(ServerFeaturesServer::new(FeaturesService))
}

struct StreamsService {
    log: Arc<Mutex<Log>>,
}

impl StreamsService {
    fn log(&self) -> Result<MutexGuard<'_, Log>, Status> {
        self.log
            .lock()
            .map_err(|_| Status::internal("the fake's log is poisoned"))
    }
}

type ReadStream = Pin<Box<dyn Stream<Item = Result<ReadResp, Status>> + Send + 'static>>;
type BatchStream = Pin<Box<dyn Stream<Item = Result<BatchAppendResp, Status>> + Send + 'static>>;

fn stream_name(identifier: Option<StreamIdentifier>) -> Result<String, Status> {
    let identifier =
        identifier.ok_or_else(|| Status::invalid_argument("'stream_identifier' is required"))?;
    String::from_utf8(identifier.stream_name)
        .map_err(|_| Status::invalid_argument("the stream name is not UTF-8"))
}

fn uuid_of(id: Option<shared::Uuid>) -> Result<Uuid, Status> {
    match id.and_then(|id| id.value) {
        Some(shared::uuid::Value::String(text)) => text
            .parse()
            .map_err(|_| Status::invalid_argument(format!("'{text}' is not a valid UUID"))),
        Some(shared::uuid::Value::Structured(s)) => {
            let mut bytes = [0u8; 16];
            bytes[..8].copy_from_slice(&s.most_significant_bits.to_be_bytes());
            bytes[8..].copy_from_slice(&s.least_significant_bits.to_be_bytes());
            Ok(Uuid::from_bytes(bytes))
        }
        None => Err(Status::invalid_argument("'id' is a required argument")),
    }
}

fn uuid_out(id: Uuid, structured: bool) -> shared::Uuid {
    let value = if structured {
        let bytes = id.as_bytes();
        let mut most = [0u8; 8];
        let mut least = [0u8; 8];
        most.copy_from_slice(&bytes[..8]);
        least.copy_from_slice(&bytes[8..]);
        shared::uuid::Value::Structured(shared::uuid::Structured {
            most_significant_bits: i64::from_be_bytes(most),
            least_significant_bits: i64::from_be_bytes(least),
        })
    } else {
        shared::uuid::Value::String(id.to_string())
    };
    shared::Uuid { value: Some(value) }
}

fn event_message(record: Record, structured: bool) -> ReadResp {
    let metadata = HashMap::from([
        ("type".to_owned(), record.event_type),
        ("content-type".to_owned(), record.content_type),
        ("created".to_owned(), record.created.to_string()),
    ]);
    let event = read_resp::read_event::RecordedEvent {
        id: Some(uuid_out(record.id, structured)),
        stream_identifier: Some(StreamIdentifier {
            stream_name: record.stream.into_bytes(),
        }),
        stream_revision: record.revision,
        prepare_position: record.position,
        commit_position: record.position,
        metadata,
        custom_metadata: record.custom_metadata,
        data: record.data,
    };
    ReadResp {
        content: Some(read_resp::Content::Event(read_resp::ReadEvent {
            event: Some(event),
            link: None,
            position: Some(read_resp::read_event::Position::CommitPosition(
                record.position,
            )),
        })),
    }
}

fn answer(messages: Vec<ReadResp>) -> Response<ReadStream> {
    Response::new(Box::pin(tokio_stream::iter(messages.into_iter().map(Ok))))
}

#[tonic::async_trait]
impl Streams for StreamsService {
    type ReadStream = ReadStream;

    async fn read(&self, request: Request<ReadReq>) -> Result<Response<ReadStream>, Status> {
        use read_req::options::{
            CountOption, FilterOption, StreamOption, all_options::AllOption,
            stream_options::RevisionOption, uuid_option,
        };
        let options = request
            .into_inner()
            .options
            .ok_or_else(|| Status::invalid_argument("'options' is required"))?;
        let backward = options.read_direction == read_req::options::ReadDirection::Backwards as i32;
        let count = match options.count_option {
            Some(CountOption::Count(count)) => count,
            Some(CountOption::Subscription(_)) => {
                return Err(Status::unimplemented(
                    "the fake does not serve subscriptions",
                ));
            }
            None => return Err(Status::invalid_argument("'count_option' is required")),
        };
        if let Some(FilterOption::Filter(_)) = options.filter_option {
            return Err(Status::unimplemented(
                "the fake does not serve server-side filters",
            ));
        }
        let structured = matches!(
            options.uuid_option.and_then(|u| u.content),
            Some(uuid_option::Content::Structured(_))
        );
        let compatibility = options.control_option.map_or(0, |c| c.compatibility);
        match options.stream_option {
            Some(StreamOption::Stream(stream_options)) => {
                let stream = stream_name(stream_options.stream_identifier)?;
                let from = match stream_options.revision_option {
                    Some(RevisionOption::Revision(revision)) => Some(revision),
                    Some(RevisionOption::Start(_)) => Some(0),
                    Some(RevisionOption::End(_)) if backward => None,
                    Some(RevisionOption::End(_)) => Some(u64::MAX),
                    None => return Err(Status::invalid_argument("'revision_option' is required")),
                };
                let log = self.log()?;
                let Some(records) = log.read_stream(&stream, from, backward, count) else {
                    return Ok(answer(vec![ReadResp {
                        content: Some(read_resp::Content::StreamNotFound(
                            read_resp::StreamNotFound {
                                stream_identifier: Some(StreamIdentifier {
                                    stream_name: stream.into_bytes(),
                                }),
                            },
                        )),
                    }]));
                };
                let last = log.current_revision(&stream).unwrap_or(0);
                drop(log);
                let complete = (records.len() as u64) < count;
                let mut messages: Vec<ReadResp> = records
                    .into_iter()
                    .map(|r| event_message(r, structured))
                    .collect();
                // Newer clients (compatibility 1) are told where the stream ends when a read
                // reaches it.
                if compatibility >= 1 && complete {
                    let content = if backward {
                        read_resp::Content::FirstStreamPosition(0)
                    } else {
                        read_resp::Content::LastStreamPosition(last)
                    };
                    messages.push(ReadResp {
                        content: Some(content),
                    });
                }
                Ok(answer(messages))
            }
            Some(StreamOption::All(all_options)) => {
                let log = self.log()?;
                let from = match all_options.all_option {
                    Some(AllOption::Position(position)) => {
                        if position.commit_position != position.prepare_position
                            || !log.is_valid_position(position.commit_position)
                        {
                            return Err(Status::invalid_argument(
                                "Trying to read from an invalid position.",
                            ));
                        }
                        Some(position.commit_position)
                    }
                    Some(AllOption::Start(_)) => None,
                    Some(AllOption::End(_)) if backward => None,
                    Some(AllOption::End(_)) => Some(log.end()),
                    None => return Err(Status::invalid_argument("'all_option' is required")),
                };
                let records = log.read_all(from, backward, count);
                drop(log);
                Ok(answer(
                    records
                        .into_iter()
                        .map(|r| event_message(r, structured))
                        .collect(),
                ))
            }
            None => Err(Status::invalid_argument("'stream_option' is required")),
        }
    }

    async fn append(
        &self,
        request: Request<Streaming<AppendReq>>,
    ) -> Result<Response<AppendResp>, Status> {
        use append_req::options::ExpectedStreamRevision;
        let mut incoming = request.into_inner();
        let Some(first) = incoming.message().await? else {
            return Err(Status::invalid_argument(
                "an append needs its options first",
            ));
        };
        let Some(append_req::Content::Options(options)) = first.content else {
            return Err(Status::invalid_argument(
                "an append needs its options first",
            ));
        };
        let stream = stream_name(options.stream_identifier)?;
        let expected = match options.expected_stream_revision {
            Some(ExpectedStreamRevision::Revision(revision)) => Expected::Revision(revision),
            Some(ExpectedStreamRevision::NoStream(_)) => Expected::NoStream,
            Some(ExpectedStreamRevision::Any(_)) => Expected::Any,
            Some(ExpectedStreamRevision::StreamExists(_)) => Expected::StreamExists,
            None => {
                return Err(Status::invalid_argument(
                    "'expected_stream_revision' is required",
                ));
            }
        };
        let mut events = Vec::new();
        while let Some(message) = incoming.message().await? {
            let Some(append_req::Content::ProposedMessage(proposed)) = message.content else {
                return Err(Status::invalid_argument("options sent twice"));
            };
            let mut metadata = proposed.metadata;
            let event_type = metadata.remove("type").ok_or_else(|| {
                Status::invalid_argument("Required metadata property 'type' is missing")
            })?;
            let content_type = metadata.remove("content-type").ok_or_else(|| {
                Status::invalid_argument("Required metadata property 'content-type' is missing")
            })?;
            events.push(Proposed {
                id: uuid_of(proposed.id)?,
                event_type,
                content_type,
                data: proposed.data,
                custom_metadata: proposed.custom_metadata,
            });
        }
        let outcome = self.log()?.append(&stream, expected, events);
        let result = match outcome {
            WriteOutcome::Success {
                current_revision,
                position,
            } => append_resp::Result::Success(append_resp::Success {
                current_revision_option: Some(match current_revision {
                    Some(r) => append_resp::success::CurrentRevisionOption::CurrentRevision(r),
                    None => append_resp::success::CurrentRevisionOption::NoStream(shared::Empty {}),
                }),
                position_option: Some(match position {
                    Some(p) => {
                        append_resp::success::PositionOption::Position(append_resp::Position {
                            commit_position: p,
                            prepare_position: p,
                        })
                    }
                    None => append_resp::success::PositionOption::NoPosition(shared::Empty {}),
                }),
            }),
            WriteOutcome::WrongExpectedVersion { current_revision } => {
                use append_resp::wrong_expected_version::{
                    CurrentRevisionOption, CurrentRevisionOption2060, ExpectedRevisionOption,
                    ExpectedRevisionOption2060,
                };
                let (expected_now, expected_old) = match expected {
                    Expected::Revision(r) => (
                        ExpectedRevisionOption::ExpectedRevision(r),
                        ExpectedRevisionOption2060::ExpectedRevision2060(r),
                    ),
                    Expected::NoStream => (
                        ExpectedRevisionOption::ExpectedNoStream(shared::Empty {}),
                        ExpectedRevisionOption2060::ExpectedRevision2060(u64::MAX),
                    ),
                    Expected::Any => (
                        ExpectedRevisionOption::ExpectedAny(shared::Empty {}),
                        ExpectedRevisionOption2060::Any2060(shared::Empty {}),
                    ),
                    Expected::StreamExists => (
                        ExpectedRevisionOption::ExpectedStreamExists(shared::Empty {}),
                        ExpectedRevisionOption2060::StreamExists2060(shared::Empty {}),
                    ),
                };
                let (current_now, current_old) = match current_revision {
                    Some(r) => (
                        CurrentRevisionOption::CurrentRevision(r),
                        CurrentRevisionOption2060::CurrentRevision2060(r),
                    ),
                    None => (
                        CurrentRevisionOption::CurrentNoStream(shared::Empty {}),
                        CurrentRevisionOption2060::NoStream2060(shared::Empty {}),
                    ),
                };
                append_resp::Result::WrongExpectedVersion(append_resp::WrongExpectedVersion {
                    current_revision_option_20_6_0: Some(current_old),
                    expected_revision_option_20_6_0: Some(expected_old),
                    current_revision_option: Some(current_now),
                    expected_revision_option: Some(expected_now),
                })
            }
        };
        Ok(Response::new(AppendResp {
            result: Some(result),
        }))
    }

    async fn delete(&self, _: Request<DeleteReq>) -> Result<Response<DeleteResp>, Status> {
        Err(Status::unimplemented("the fake does not delete streams"))
    }

    async fn tombstone(&self, _: Request<TombstoneReq>) -> Result<Response<TombstoneResp>, Status> {
        Err(Status::unimplemented("the fake does not tombstone streams"))
    }

    type BatchAppendStream = BatchStream;

    async fn batch_append(
        &self,
        _: Request<Streaming<BatchAppendReq>>,
    ) -> Result<Response<BatchStream>, Status> {
        Err(Status::unimplemented(
            "the fake does not serve batch appends",
        ))
    }
}

struct FeaturesService;

#[tonic::async_trait]
impl ServerFeatures for FeaturesService {
    async fn get_supported_methods(
        &self,
        _: Request<shared::Empty>,
    ) -> Result<Response<SupportedMethods>, Status> {
        let method = |name: &str, features: &[&str]| SupportedMethod {
            method_name: name.to_owned(),
            service_name: "event_store.client.streams.streams".to_owned(),
            features: features.iter().map(|f| (*f).to_owned()).collect(),
        };
        Ok(Response::new(SupportedMethods {
            methods: vec![
                method("read", &["position", "events"]),
                method("append", &[]),
            ],
            event_store_server_version: SERVER_VERSION.to_owned(),
        }))
    }
}

//! The four calls of the Media API (a listing page, get, put, delete) over [`HttpApi`]'s
//! attempts: each names what it does, refuses what it must not send (a media id a URL cannot
//! carry, an upload over the size limit), and maps the answer.

use super::*;

impl MediaApi for HttpApi {
    fn list_page(&self, token: Option<&str>) -> Result<ListPage, ApiError> {
        let token = token
            .map(|t| {
                HeaderValue::from_str(t).map_err(|_| {
                    ApiError::Config("a continuation token must be visible ASCII".into())
                })
            })
            .transpose()?;
        let mut renewed = false;
        let page =
            self.with_retries("list", |a| self.list_once(token.as_ref(), &a, &mut renewed))?;
        log::debug!(
            "listed {} media{}",
            page.items.len(),
            if page.next.is_some() {
                ", more to come"
            } else {
                ""
            }
        );
        Ok(page)
    }

    fn get(&self, name: &str) -> Result<Media, ApiError> {
        let mut sink = VecSink::default();
        let media = self.get_into(name, &mut sink)?;
        Ok(Media {
            body: sink.into_bytes(),
            ..media
        })
    }

    fn get_into(&self, name: &str, sink: &mut dyn BodySink) -> Result<Media, ApiError> {
        check_name(name)?;
        let url = self.media_url(name);
        let what = format!("get {name:?}");
        let mut renewed = false;
        let media = self.with_retries(&what, |a| {
            self.get_once_into(&url, &what, &a, &mut renewed, sink)
        })?;
        log::debug!("{what}: done");
        Ok(media)
    }

    fn put(
        &self,
        name: &str,
        body: Bytes,
        content_type: &str,
        cache_control: Option<&str>,
    ) -> Result<(), ApiError> {
        check_name(name)?;
        let url = self.media_url(name);
        let what = format!("put {name:?}");
        let size = body.len() as u64;
        if size > MAX_MEDIA_SIZE {
            // Refused here, not sent: the upload is doomed, and a server that refuses it before
            // reading the body and closes may reset the connection before its 413 is read.
            log::debug!("{what}: {size} bytes is over the {MAX_MEDIA_SIZE} byte limit; not sent");
            return Err(ApiError::TooLarge {
                size,
                limit: Some(MAX_MEDIA_SIZE),
            });
        }
        let ct = HeaderValue::from_str(content_type)
            .map_err(|_| ApiError::UnsupportedType(content_type.to_string()))?;
        let cc = cache_control
            .map(|c| {
                HeaderValue::from_str(c).map_err(|_| {
                    ApiError::InvalidHeader(format!(
                        "the cache control {c:?} cannot be sent: a header value cannot hold a \
                         control character"
                    ))
                })
            })
            .transpose()?;
        let op = Op::Put { size, content_type };
        let mut renewed = false;
        self.with_retries(&what, |a| {
            let (resp, authorization) =
                self.send(RequestKind::Put, size, &what, &a, &mut renewed, || {
                    let req = self
                        .client
                        .put(&url)
                        .header(ACCEPT, "application/json")
                        .header(CONTENT_TYPE, ct.clone())
                        .body(body.clone());
                    match &cc {
                        Some(cc) => req.header(CACHE_CONTROL, cc.clone()),
                        None => req,
                    }
                })?;
            if !resp.status().is_success() {
                return Err(self.status_failure(resp, &authorization, &op, renewed));
            }
            drain(resp);
            Ok(())
        })?;
        log::debug!("{what}: stored {} bytes", body.len());
        Ok(())
    }

    fn delete(&self, name: &str) -> Result<(), ApiError> {
        check_name(name)?;
        let url = self.media_url(name);
        let what = format!("delete {name:?}");
        let mut renewed = false;
        let result = self.with_retries(&what, |a| {
            let (resp, authorization) =
                self.send(RequestKind::Delete, 0, &what, &a, &mut renewed, || {
                    self.client.delete(&url).header(ACCEPT, "application/json")
                })?;
            if !resp.status().is_success() {
                return Err(self.status_failure(resp, &authorization, &Op::Other, renewed));
            }
            drain(resp);
            Ok(())
        });
        match result {
            // Production answers 204 for a missing name; a 404 means the same.
            Ok(()) | Err(ApiError::NotFound) => {
                log::debug!("{what}: done");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn media_url(&self, name: &str) -> String {
        format!("{}/{}", self.media_base, encode_media_id(name))
    }

    fn counters(&self) -> Option<Arc<Counters>> {
        Some(self.counters.clone())
    }
}

/// Refuse a media id whose URL would address another name (see [`url_can_carry`]).
fn check_name(name: &str) -> Result<(), ApiError> {
    if url_can_carry(name) {
        Ok(())
    } else {
        Err(ApiError::Config(format!(
            "the media id {name:?} cannot be sent: a URL cannot carry a '.' or '..' segment"
        )))
    }
}
